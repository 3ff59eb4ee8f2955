//! Turns the raw bytes a process sent to the kernel into the event model.
//!
//! The bytes are hostile: any process may send anything on a netlink socket or through an ioctl,
//! and the eBPF side copies them as sent. Nothing here panics on them and nothing allocates more
//! than a small multiple of their length. Messages and attributes are walked by
//! [`crate::netlink`]; attribute values are parsed by `netlink-packet-route` (and
//! `netlink-packet-core`), never by hand.
//!
//! - [`decode_netlink`]: every rtnetlink message of one send (several may be batched).
//! - [`decode_ioctl`]: one `SIOCDELRT` or `SIOCSIFFLAGS` ioctl (net-tools' `route` / `ifconfig`).

mod attrs;
mod ioctl;
pub mod kernel;
mod link;
mod names;
mod netlink;
pub mod record;
mod route;
mod rule;

#[cfg(test)]
mod tests;

pub use ioctl::{decode_ioctl, IoctlError};
pub use netlink::{decode_netlink, MAX_MESSAGES};

/// The rule a kernel notification or dump reply describes (`body` follows the nlmsghdr).
pub fn rule_body(body: &[u8]) -> Result<(Option<Family>, Rule), BodyError> {
    rule::parse(body)
}

/// The name iproute2 gives a route protocol number (`static`, `kernel`, …), else the number.
pub fn protocol_name(raw: u8) -> String {
    names::protocol(raw)
}

/// The route a kernel notification or dump reply describes (`body` follows the nlmsghdr).
/// Unlike requests, these are not filtered by `NLM_F_REQUEST`: the kernel sends them.
pub fn route_body(body: &[u8]) -> Result<(Option<Family>, Route), BodyError> {
    route::parse(body, Cause::Request)
}

pub use crate::event::Object;
use crate::{
    event::{Cause, Family, Route, Rule},
    netlink::{uapi, Header},
};

/// Why a message body (what follows its nlmsghdr) does not decode.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// The fixed header (`rtmsg`, `fib_rule_hdr`, `ifinfomsg`, `ifaddrmsg`) does not parse;
    /// `reason` is the parser's.
    #[error("{header}: {reason}")]
    Header {
        header: &'static str,
        reason: String,
    },
    /// The fixed header is cut short.
    #[error("{header}: {len} bytes, it needs {needs}")]
    Short {
        header: &'static str,
        len: usize,
        needs: usize,
    },
    /// An attribute the decoder reads does not parse: the value the event would carry is
    /// unknown, and reporting the message without it would claim a wildcard the sender never
    /// sent. `reason` is the parser's, cut to a few hundred bytes.
    #[error("attribute type {kind} ({len} value bytes): {reason}")]
    Attribute {
        kind: u16,
        len: usize,
        reason: String,
    },
}

/// Why some bytes could not be decoded. Each variant carries the values that were wrong and,
/// for netlink, where in the payload they were.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes are left than a `struct nlmsghdr` needs. The kernel ignores such a tail
    /// (`netlink_rcv_skb` loops only while a whole header is left).
    #[error(
        "netlink header truncated at offset {offset}: {remaining} bytes left, a header needs 16"
    )]
    TruncatedHeader { offset: usize, remaining: usize },
    /// `nlmsg_len` is shorter than the header or longer than what is left (a truncated capture
    /// or garbage). The kernel stops processing the send at such a header.
    #[error(
        "netlink message at offset {offset} (type {msg_type}) has nlmsg_len {nlmsg_len} but \
         {remaining} bytes are left (a message needs 16..={remaining})"
    )]
    BadLength {
        offset: usize,
        msg_type: u16,
        nlmsg_len: u32,
        remaining: usize,
    },
    /// A netlink message type that is neither rtnetlink nor a netlink control message.
    #[error("unknown netlink message type {msg_type} at offset {offset} ({len} bytes)")]
    UnknownType {
        offset: usize,
        msg_type: u16,
        len: usize,
    },
    /// A message of a known type whose body (fixed header or an attribute this decoder reads)
    /// does not parse.
    #[error("malformed {op} at offset {offset} ({len} bytes): {reason}")]
    Malformed {
        op: &'static str,
        offset: usize,
        len: usize,
        reason: BodyError,
    },
    /// More messages in one payload than [`MAX_MESSAGES`]; the rest was not decoded.
    #[error("more than {limit} netlink messages in one payload; stopped at offset {offset}")]
    TooManyMessages { offset: usize, limit: usize },
    /// An ioctl command this decoder does not handle.
    #[error("unsupported ioctl command {cmd:#x}")]
    UnknownIoctl { cmd: u32 },
    /// `SIOCDELRT` on a socket family other than AF_INET (2) / AF_INET6 (10).
    #[error("SIOCDELRT on a socket of family {sock_family}: only AF_INET (2) and AF_INET6 (10) route ioctls exist")]
    UnsupportedSocketFamily { sock_family: u16 },
    /// A `struct rtentry` the kernel would refuse (e.g. `rt_dst` not AF_INET: EAFNOSUPPORT).
    #[error("malformed {op} argument: {reason}")]
    MalformedIoctl {
        op: &'static str,
        reason: IoctlError,
    },
}

/// A request that removes something (or makes the kernel remove things).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    /// `None` for links and for families other than AF_INET / AF_INET6.
    pub family: Option<Family>,
    pub cause: Cause,
    pub object: Object,
}

/// One decoded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// `None` for ioctls.
    pub header: Option<Header>,
    /// `RTM_DELROUTE`, `SIOCDELRT`, … (an unknown message type is an error, not an op).
    pub op: &'static str,
    /// `None` when the request removes nothing (`RTM_NEWROUTE` without `NLM_F_REPLACE`,
    /// `RTM_NEWLINK` that brings a link up, `RTM_GETROUTE`, …).
    pub removal: Option<Removal>,
}

/// `AF_INET` / `AF_INET6` as the event's family; anything else has none.
fn family(raw: u8) -> Option<Family> {
    match raw {
        uapi::AF_INET => Some(Family::Inet),
        uapi::AF_INET6 => Some(Family::Inet6),
        _ => None,
    }
}
