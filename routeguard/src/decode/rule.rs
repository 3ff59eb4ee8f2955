//! RTM_DELRULE / RTM_NEWRULE(NLM_F_REPLACE) bodies (`struct fib_rule_hdr` + FRA_* attributes).

use netlink_packet_core::{Emitable, Parseable};
use netlink_packet_route::rule::{RuleAttribute, RuleFlags, RuleHeader};

use super::{attrs, family, names, BodyError, Object, Removal};
use crate::{
    event::{Cause, Family, Rule},
    netlink::uapi::{
        FRA_DST, FRA_FWMARK, FRA_FWMASK, FRA_IIFNAME, FRA_OIFNAME, FRA_PRIORITY, FRA_PROTOCOL,
        FRA_SRC, FRA_TABLE, RT_TABLE_UNSPEC,
    },
};

const READ: &[u16] = &[
    FRA_DST,
    FRA_SRC,
    FRA_IIFNAME,
    FRA_PRIORITY,
    FRA_FWMARK,
    FRA_TABLE,
    FRA_FWMASK,
    FRA_OIFNAME,
    FRA_PROTOCOL,
];

/// The removal of the policy rule a `fib_rule_hdr` body names (see [`parse`]).
pub(super) fn rule(body: &[u8], cause: Cause) -> Result<Removal, BodyError> {
    let (family, rule) = parse(body)?;
    Ok(Removal {
        family,
        cause,
        object: Object::Rule(rule),
    })
}

/// The policy rule a `fib_rule_hdr` body names. On a delete every field left out is a
/// wildcard (`fib_nl_delrule` → `rule_find`, net/core/fib_rules.c: `if (rule->pref &&
/// r->pref != rule->pref) continue;` and so on), so it stays `None`.
pub(super) fn parse(body: &[u8]) -> Result<(Option<Family>, Rule), BodyError> {
    let header = RuleHeader::parse(body).map_err(|e| BodyError::Header {
        header: "fib_rule_hdr",
        reason: e.to_string(),
    })?;
    let attributes = body.get(header.buffer_len()..).unwrap_or_default();

    let mut rule = Rule::default();
    let (mut from, mut to, mut fwmark, mut fwmask) = (None, None, None, None);
    attrs::for_each(
        attributes,
        READ,
        |nla| RuleAttribute::parse(nla),
        |attr| match attr {
            RuleAttribute::Source(ip) => from = Some(ip),
            RuleAttribute::Destination(ip) => to = Some(ip),
            RuleAttribute::Iifname(name) => rule.iif = Some(attrs::name(name)),
            RuleAttribute::Oifname(name) => rule.oif = Some(attrs::name(name)),
            RuleAttribute::Priority(priority) => rule.priority = Some(priority),
            RuleAttribute::FwMark(mark) => fwmark = Some(mark),
            RuleAttribute::FwMask(mask) => fwmask = Some(mask),
            RuleAttribute::Table(table) => rule.table = Some(table),
            RuleAttribute::Protocol(protocol) => {
                // RTPROT_UNSPEC matches any protocol (`rule_find`: `if (rule->proto && ...)`).
                rule.protocol = Some(u8::from(protocol))
                    .filter(|p| *p != 0)
                    .map(names::protocol);
            }
            _ => {}
        },
    )?;

    // FRA_TABLE overrides the 8-bit `table` of the header; 0 names none.
    rule.table = rule
        .table
        .or(Some(u32::from(header.table)))
        .filter(|table| *table != RT_TABLE_UNSPEC);
    rule.from = from.map(|ip| format!("{ip}/{}", header.src_len));
    rule.to = to.map(|ip| format!("{ip}/{}", header.dst_len));
    rule.fwmark = fwmark.map(|mark| match fwmask {
        Some(mask) if mask != u32::MAX => format!("{mark:#x}/{mask:#x}"),
        _ => format!("{mark:#x}"),
    });
    let action = u8::from(header.action);
    // FR_ACT_UNSPEC (0) matches any action.
    rule.action = (action != 0).then(|| names::rule_action(action));
    rule.invert = header.flags.contains(RuleFlags::Invert);

    Ok((family(u8::from(header.family)), rule))
}
