//! The protect policy: which rules and routes routeguard puts back when they are removed, and
//! who may remove them without that.
//!
//! The same entries come from the config file (`[[protect]]` tables, also read by `trace
//! --config`) and from `trace --protect 'kind=rule table=77 allow-comm=kube-router'`. Values are
//! checked while parsing, so a bad one is reported with its line (config) or flag (command line)
//! before anything starts.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{de, Deserialize, Deserializer};

pub use super::allow::Allow;
use crate::{
    decode,
    event::{parse_fwmark, Event, EventType, Family, Kind, Object, Outcome},
};

/// One `[[protect]]` entry. Every selector left out matches anything.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protect {
    /// Shown in restore events; defaults to a description of the selectors.
    #[serde(default)]
    pub name: Option<String>,
    /// `rule` or `route`.
    #[serde(deserialize_with = "kind")]
    pub kind: Kind,
    /// `inet`/`4` or `inet6`/`6`.
    #[serde(default, deserialize_with = "family")]
    pub family: Option<Family>,
    /// A name under /run/netns, `host`, or a namespace inode number.
    #[serde(default, deserialize_with = "netns")]
    pub netns: Option<String>,
    /// Table id, or `main`, `local`, `default`.
    #[serde(default, deserialize_with = "table")]
    pub table: Option<u32>,
    /// Rule priority, or route metric: `32764` or an inclusive range `"32000-32765"`.
    #[serde(default, deserialize_with = "priority")]
    pub priority: Option<(u32, u32)>,
    /// `static`, `kernel`, `boot`, `dhcp`, … or a number.
    #[serde(default, deserialize_with = "protocol")]
    pub protocol: Option<u8>,
    /// Routes whose destination lies within this prefix (`default` is `0.0.0.0/0`).
    #[serde(default, deserialize_with = "prefix")]
    pub dst: Option<IpNet>,
    /// Rules whose `from` selector lies within this prefix.
    #[serde(default, deserialize_with = "prefix")]
    pub from: Option<IpNet>,
    /// Rules whose `to` selector lies within this prefix.
    #[serde(default, deserialize_with = "prefix")]
    pub to: Option<IpNet>,
    /// Rules with this input interface selector.
    #[serde(default)]
    pub iif: Option<String>,
    /// Rules with this output interface selector.
    #[serde(default)]
    pub oif: Option<String>,
    /// Rules with this firewall mark: `0x10` or `0x10/0xff`.
    #[serde(default, deserialize_with = "fwmark")]
    pub fwmark: Option<(u32, u32)>,
    /// Who may remove these objects without routeguard putting them back.
    #[serde(default)]
    pub allow: Allow,
    /// What routeguard does about a removal by anyone not allowed: put the object back
    /// (`restore`, the default) or refuse the request in the kernel (`deny`, BPF LSM; see
    /// docs/prevention.md).
    #[serde(default, deserialize_with = "action")]
    pub action: Action,
}

/// What a protect entry does about a removal by a sender it does not allow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Action {
    /// Let the removal happen, then put the object back.
    #[default]
    Restore,
    /// Refuse the request before rtnetlink acts (EPERM), where BPF LSM is active; elsewhere,
    /// restore.
    Deny,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Restore => "restore",
            Action::Deny => "deny",
        }
    }
}

impl Protect {
    /// The entry's name, or what it selects.
    pub fn label(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        let mut words = vec![match self.kind {
            Kind::Route => "route".to_string(),
            _ => "rule".to_string(),
        }];
        if let Some(t) = self.table {
            words.push(format!("table {t}"));
        }
        if let Some((lo, hi)) = self.priority {
            words.push(if lo == hi {
                format!("priority {lo}")
            } else {
                format!("priority {lo}-{hi}")
            });
        }
        if let Some(d) = self.dst {
            words.push(format!("dst {d}"));
        }
        words.join(" ")
    }

    /// Whether `ev` is a successful removal of an object this entry protects.
    pub fn selects(&self, ev: &Event) -> bool {
        if ev.event != EventType::Removal
            || ev.outcome != Outcome::Removed
            || ev.kind() != self.kind
        {
            return false;
        }
        if self.family.is_some_and(|f| ev.family != Some(f)) {
            return false;
        }
        if let Some(want) = &self.netns {
            let named = ev.netns.name.as_deref() == Some(want.as_str());
            if !named && *want != ev.netns.inode.to_string() {
                return false;
            }
        }
        match &ev.object {
            Object::Route(r) => {
                self.common(r.table, r.priority, r.protocol.as_deref())
                    && self.dst.is_none_or(|net| within(r.dst.as_deref(), &net))
            }
            Object::Rule(r) => {
                self.common(r.table, r.priority, r.protocol.as_deref())
                    && self.from.is_none_or(|net| within(r.from.as_deref(), &net))
                    && self.to.is_none_or(|net| within(r.to.as_deref(), &net))
                    && self.iif.as_ref().is_none_or(|i| r.iif.as_ref() == Some(i))
                    && self.oif.as_ref().is_none_or(|o| r.oif.as_ref() == Some(o))
                    && self
                        .fwmark
                        .is_none_or(|m| r.fwmark.as_deref().and_then(parse_fwmark) == Some(m))
            }
            // Only routes and rules are protected.
            _ => false,
        }
    }

    fn common(&self, table: Option<u32>, priority: Option<u32>, protocol: Option<&str>) -> bool {
        self.table.is_none_or(|t| table == Some(t))
            && self
                .priority
                .is_none_or(|(lo, hi)| priority.is_some_and(|p| (lo..=hi).contains(&p)))
            && self
                .protocol
                .is_none_or(|p| protocol == Some(decode::protocol_name(p).as_str()))
    }
}

/// Whether the event's prefix (`10.1.0.0/24`, `default`, or a bare address) lies in `net`.
/// A rule without the selector (`from all`) is `0/0`.
fn within(prefix: Option<&str>, net: &IpNet) -> bool {
    let parsed = match prefix {
        None | Some("default") | Some("all") => {
            return net.prefix_len() == 0;
        }
        Some(p) => p
            .parse::<IpNet>()
            .ok()
            .or_else(|| p.parse::<IpAddr>().ok().map(IpNet::from)),
    };
    parsed.is_some_and(|p| net.contains(&p))
}

fn kind<'de, D: Deserializer<'de>>(d: D) -> Result<Kind, D::Error> {
    match String::deserialize(d)?.as_str() {
        "rule" => Ok(Kind::Rule),
        "route" => Ok(Kind::Route),
        "nexthop" => Err(de::Error::custom(
            "kind `nexthop` cannot be protected yet: routeguard does not keep nexthop objects' \
             attributes to re-add them; protect the routes that use the nexthop instead",
        )),
        other => Err(de::Error::custom(format!(
            "kind `{other}` is not protectable; use `rule` or `route`"
        ))),
    }
}

fn action<'de, D: Deserializer<'de>>(d: D) -> Result<Action, D::Error> {
    match String::deserialize(d)?.as_str() {
        "restore" => Ok(Action::Restore),
        "deny" => Ok(Action::Deny),
        other => Err(de::Error::custom(format!(
            "action `{other}` is not an action; use `restore` (put the object back) or `deny` \
             (refuse the removal, BPF LSM)"
        ))),
    }
}

fn family<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Family>, D::Error> {
    let s = Scalar::deserialize(d)?.text();
    Family::parse(&s).map(Some).map_err(de::Error::custom)
}

fn netns<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = Scalar::deserialize(d)?.text();
    if s.is_empty() || s.contains('/') {
        return Err(de::Error::custom(format!(
            "netns `{s}` is not a namespace; use a name under /run/netns, `host` or an inode number"
        )));
    }
    Ok(Some(s))
}

fn table<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let s = Scalar::deserialize(d)?.text();
    let id = match s.as_str() {
        "main" => 254,
        "local" => 255,
        "default" => 253,
        n => n.parse().map_err(|_| {
            de::Error::custom(format!(
                "table `{s}` is not a table; use a number or main, local, default"
            ))
        })?,
    };
    if id == 0 {
        return Err(de::Error::custom(
            "table 0 is not a table (it means `unspecified`)",
        ));
    }
    Ok(Some(id))
}

fn priority<'de, D: Deserializer<'de>>(d: D) -> Result<Option<(u32, u32)>, D::Error> {
    let s = Scalar::deserialize(d)?.text();
    let bad = || {
        de::Error::custom(format!(
            "priority `{s}` is not a number or a range like \"32000-32765\""
        ))
    };
    let (lo, hi) = match s.split_once('-') {
        Some((lo, hi)) => (lo.trim(), hi.trim()),
        None => (s.trim(), s.trim()),
    };
    let (lo, hi): (u32, u32) = (
        lo.parse().map_err(|_| bad())?,
        hi.parse().map_err(|_| bad())?,
    );
    if lo > hi {
        return Err(de::Error::custom(format!(
            "priority range `{s}` is inverted; write the lower bound first, e.g. \"{hi}-{lo}\""
        )));
    }
    Ok(Some((lo, hi)))
}

fn protocol<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    let s = Scalar::deserialize(d)?.text();
    if let Ok(n) = s.parse::<u8>() {
        return Ok(Some(n));
    }
    (0..=u8::MAX)
        .find(|&p| decode::protocol_name(p) == s)
        .map(Some)
        .ok_or_else(|| {
            de::Error::custom(format!(
                "protocol `{s}` is unknown; use a number (0-255) or a name such as static, \
                 kernel, boot, dhcp"
            ))
        })
}

fn prefix<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpNet>, D::Error> {
    let s = String::deserialize(d)?;
    if s == "default" || s == "all" {
        return Ok(Some(IpNet::V4(ipnet::Ipv4Net::default())));
    }
    let net = s
        .parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            de::Error::custom(format!(
                "`{s}` is not an IP prefix; use e.g. \"10.0.0.0/8\" or \"2001:db8::/32\""
            ))
        })?;
    if net.trunc() != net {
        return Err(de::Error::custom(format!(
            "`{s}` has host bits set; did you mean \"{}\"?",
            net.trunc()
        )));
    }
    Ok(Some(net))
}

fn fwmark<'de, D: Deserializer<'de>>(d: D) -> Result<Option<(u32, u32)>, D::Error> {
    let s = Scalar::deserialize(d)?.text();
    parse_fwmark(&s).map(Some).ok_or_else(|| {
        de::Error::custom(format!(
            "fwmark `{s}` is not a mark; use e.g. \"0x10\" or \"0x10/0xff\""
        ))
    })
}

/// A value written as a TOML string or integer.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(i64),
    Text(String),
}

impl Scalar {
    fn text(self) -> String {
        match self {
            Scalar::Int(n) => n.to_string(),
            Scalar::Text(s) => s,
        }
    }
}

/// Why a `--protect` spec is not a protect entry.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SpecError {
    #[error("`{0}` is not key=value (e.g. table=77)")]
    NotKeyValue(String),
    #[error("`{0}` is given twice")]
    Twice(String),
    /// A key or value the `[[protect]]` entry refuses; the message says which and what to use.
    #[error("{0}")]
    Entry(String),
}

/// `trace --protect 'kind=rule table=77 priority=32000-32765 allow-comm=kube-router'`: the keys
/// of a `[[protect]]` entry, `allow.X` written `allow-X` (repeatable).
pub fn parse_spec(spec: &str) -> Result<Protect, SpecError> {
    let mut table = toml::Table::new();
    let mut allow = toml::Table::new();
    for word in spec.split([' ', ',']).filter(|w| !w.is_empty()) {
        let (key, value) = word
            .split_once('=')
            .ok_or_else(|| SpecError::NotKeyValue(word.to_string()))?;
        if let Some(who) = key.strip_prefix("allow-") {
            let list = allow
                .entry(who)
                .or_insert_with(|| toml::Value::Array(Vec::new()));
            if let toml::Value::Array(items) = list {
                items.push(toml::Value::String(value.to_string()));
            }
            continue;
        }
        let value = match value.parse::<i64>() {
            Ok(n) => toml::Value::Integer(n),
            Err(_) => toml::Value::String(value.to_string()),
        };
        if table.insert(key.to_string(), value).is_some() {
            return Err(SpecError::Twice(key.to_string()));
        }
    }
    if !allow.is_empty() {
        table.insert("allow".into(), toml::Value::Table(allow));
    }
    Protect::deserialize(toml::Value::Table(table))
        .map_err(|e| SpecError::Entry(e.message().trim().to_string()))
}
