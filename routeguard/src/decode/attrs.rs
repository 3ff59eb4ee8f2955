//! Reads one message's attributes the way the kernel does for the requests decoded here.
//!
//! The kernel parses RTM_DELROUTE, RTM_DELRULE, RTM_DELADDR and RTM_*LINK requests with
//! `nlmsg_parse_deprecated` (liberal validation, `lib/nlattr.c` `__nla_parse` without
//! `NL_VALIDATE_TRAILING`): it stops at the first malformed attribute header, warns about the
//! "bytes leftover", and acts on what it parsed; when an attribute type appears twice the last
//! one wins (`tb[type] = nla`). The walk ([`netlink::attrs`]) stops where the kernel does, and
//! only the attribute types a decoder reads are parsed at all.

use netlink_packet_core::{DecodeError as NlError, NlaBuffer};

use super::BodyError;
use crate::netlink;

/// Longest reason kept from an attribute parser's error (they can quote the whole value).
const REASON_MAX: usize = 200;

/// Hands every attribute in `buf` whose type is in `read` to `visit`, parsed by `parse` (the
/// `netlink-packet-route` parser for this message's attributes), in order.
///
/// Errors when an attribute that is read does not parse: the value the event would carry is
/// unknown, and reporting the message without it would claim a wildcard the sender never sent.
pub(super) fn for_each<A>(
    buf: &[u8],
    read: &[u16],
    parse: impl Fn(&NlaBuffer<&[u8]>) -> Result<A, NlError>,
    mut visit: impl FnMut(A),
) -> Result<(), BodyError> {
    // A malformed attribute header ends the walk, as in the kernel (see the module comment).
    for attr in netlink::attrs(buf).map_while(Result::ok) {
        if !read.contains(&attr.kind) {
            continue;
        }
        match parse(&NlaBuffer::new(attr.whole)) {
            Ok(parsed) => visit(parsed),
            Err(err) => {
                return Err(BodyError::Attribute {
                    kind: attr.kind,
                    len: attr.value.len(),
                    reason: shorten(&err.to_string()).to_owned(),
                })
            }
        }
    }
    Ok(())
}

/// `text` cut to at most `REASON_MAX` bytes on a character boundary.
fn shorten(text: &str) -> &str {
    if text.len() <= REASON_MAX {
        return text;
    }
    let mut end = REASON_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A name attribute as the kernel reads it (`nla_strscpy`): up to the first NUL.
pub(super) fn name(value: String) -> String {
    match value.find('\0') {
        Some(end) => value[..end].to_owned(),
        None => value,
    }
}
