//! How a removal reached the kernel: the request, its message type or ioctl, and the syscall that
//! carried it. Each is one of a closed set routeguard writes, serialised as the name the kernel's
//! headers give it; a name routeguard does not write (a capture from another version) is kept as
//! it was read, so reading and writing it again changes nothing.

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// How the removal reached the kernel.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Request {
    /// The syscall that carried it.
    pub syscall: Syscall,
    /// Netlink message type or ioctl.
    pub op: Op,
    /// `nlmsg_seq` (netlink only).
    pub seq: Option<u32>,
    /// `nlmsg_flags` (netlink only).
    pub nlmsg_flags: Option<u16>,
    /// True when the sender asked the kernel for an ack (NLM_F_ACK) or used an ioctl.
    #[serde(default)]
    pub ack_requested: bool,
    /// The netlink port id of the sender's socket (netlink only; `None` when unknown: the
    /// socket was not bound yet, or a capture from before the field).
    #[serde(default)]
    pub port_id: Option<u32>,
}

/// A request's netlink message type (`include/uapi/linux/rtnetlink.h`) or ioctl
/// (`include/uapi/linux/sockios.h`): those that remove something, or make the kernel remove
/// things.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// A link set down (`ip link set X down`).
    RtmNewLink,
    RtmDelLink,
    RtmSetLink,
    RtmDelAddr,
    /// A route replace (NLM_F_REPLACE).
    RtmNewRoute,
    RtmDelRoute,
    /// A rule replace (NLM_F_REPLACE).
    RtmNewRule,
    RtmDelRule,
    RtmDelNexthop,
    /// net-tools' `route del`.
    SiocDelRt,
    /// net-tools' `ifconfig X down`.
    SiocSifFlags,
    /// Any other name: the message the kernel was handling when a kernel-function record was
    /// taken (`unknown` when it had none routeguard can name), or a name an older capture holds.
    Other(String),
}

impl Op {
    /// The ops routeguard names, in the order of their message types.
    pub const KNOWN: [Op; 11] = [
        Op::RtmNewLink,
        Op::RtmDelLink,
        Op::RtmSetLink,
        Op::RtmDelAddr,
        Op::RtmNewRoute,
        Op::RtmDelRoute,
        Op::RtmNewRule,
        Op::RtmDelRule,
        Op::RtmDelNexthop,
        Op::SiocDelRt,
        Op::SiocSifFlags,
    ];

    /// The op of that name, as the kernel's headers spell it.
    pub fn named(name: &str) -> Op {
        match name {
            "RTM_NEWLINK" => Op::RtmNewLink,
            "RTM_DELLINK" => Op::RtmDelLink,
            "RTM_SETLINK" => Op::RtmSetLink,
            "RTM_DELADDR" => Op::RtmDelAddr,
            "RTM_NEWROUTE" => Op::RtmNewRoute,
            "RTM_DELROUTE" => Op::RtmDelRoute,
            "RTM_NEWRULE" => Op::RtmNewRule,
            "RTM_DELRULE" => Op::RtmDelRule,
            "RTM_DELNEXTHOP" => Op::RtmDelNexthop,
            "SIOCDELRT" => Op::SiocDelRt,
            "SIOCSIFFLAGS" => Op::SiocSifFlags,
            other => Op::Other(other.to_owned()),
        }
    }

    /// `RTM_DELROUTE`, `SIOCDELRT`, …
    pub fn name(&self) -> &str {
        match self {
            Op::RtmNewLink => "RTM_NEWLINK",
            Op::RtmDelLink => "RTM_DELLINK",
            Op::RtmSetLink => "RTM_SETLINK",
            Op::RtmDelAddr => "RTM_DELADDR",
            Op::RtmNewRoute => "RTM_NEWROUTE",
            Op::RtmDelRoute => "RTM_DELROUTE",
            Op::RtmNewRule => "RTM_NEWRULE",
            Op::RtmDelRule => "RTM_DELRULE",
            Op::RtmDelNexthop => "RTM_DELNEXTHOP",
            Op::SiocDelRt => "SIOCDELRT",
            Op::SiocSifFlags => "SIOCSIFFLAGS",
            Op::Other(name) => name,
        }
    }
}

/// The syscall that carried a request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Syscall {
    /// Not seen at a syscall: heard by the kernel-function path in rtnetlink, or known only
    /// from the kernel's notification of the removal (its request record was lost, or it was
    /// sent some way the syscall path does not hook: io_uring, a compat syscall).
    Netlink,
    Sendmsg,
    Sendto,
    Sendmmsg,
    Write,
    Writev,
    Ioctl,
    /// A syscall routeguard has no name for.
    Unknown,
    /// Any other name, as an older capture holds it.
    Other(String),
}

impl Syscall {
    /// The syscalls routeguard names.
    pub const KNOWN: [Syscall; 8] = [
        Syscall::Netlink,
        Syscall::Sendmsg,
        Syscall::Sendto,
        Syscall::Sendmmsg,
        Syscall::Write,
        Syscall::Writev,
        Syscall::Ioctl,
        Syscall::Unknown,
    ];

    /// The syscall of that name.
    pub fn named(name: &str) -> Syscall {
        match name {
            "netlink" => Syscall::Netlink,
            "sendmsg" => Syscall::Sendmsg,
            "sendto" => Syscall::Sendto,
            "sendmmsg" => Syscall::Sendmmsg,
            "write" => Syscall::Write,
            "writev" => Syscall::Writev,
            "ioctl" => Syscall::Ioctl,
            "unknown" => Syscall::Unknown,
            other => Syscall::Other(other.to_owned()),
        }
    }

    /// `sendmsg`, `ioctl`, …
    pub fn name(&self) -> &str {
        match self {
            Syscall::Netlink => "netlink",
            Syscall::Sendmsg => "sendmsg",
            Syscall::Sendto => "sendto",
            Syscall::Sendmmsg => "sendmmsg",
            Syscall::Write => "write",
            Syscall::Writev => "writev",
            Syscall::Ioctl => "ioctl",
            Syscall::Unknown => "unknown",
            Syscall::Other(name) => name,
        }
    }
}

impl Serialize for Op {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Op {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(Named(Op::named))
    }
}

impl Serialize for Syscall {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Syscall {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(Named(Syscall::named))
    }
}

/// Reads a string as `T` by its name, without copying a name it knows.
struct Named<T>(fn(&str) -> T);

impl<T> de::Visitor<'_> for Named<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        Ok((self.0)(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_kept() {
        for op in Op::KNOWN {
            assert_eq!(Op::named(op.name()), op);
            let json = serde_json::to_string(&op).unwrap();
            assert_eq!(json, format!("\"{}\"", op.name()));
            assert_eq!(serde_json::from_str::<Op>(&json).unwrap(), op);
        }
        for syscall in Syscall::KNOWN {
            assert_eq!(Syscall::named(syscall.name()), syscall);
            let json = serde_json::to_string(&syscall).unwrap();
            assert_eq!(serde_json::from_str::<Syscall>(&json).unwrap(), syscall);
        }
        let odd: Op = serde_json::from_str(r#""RTM_NEWADDR""#).unwrap();
        assert_eq!(odd, Op::Other("RTM_NEWADDR".into()));
        assert_eq!(serde_json::to_string(&odd).unwrap(), r#""RTM_NEWADDR""#);
        let escaped: Syscall = serde_json::from_str(r#""send\u006dsg""#).unwrap();
        assert_eq!(escaped, Syscall::Sendmsg);
        assert!(serde_json::from_str::<Op>("7").is_err());
    }
}
