//! One event as the report reads it: the fields it uses, borrowed from the input, and every other
//! field checked but not kept.
//!
//! Parsing full [`Event`]s allocated a dozen strings per line (argv, ancestry, cgroup, request)
//! that the report then dropped, and that was nearly all of a report's time. A [`Row`] accepts
//! exactly the lines an [`Event`] accepts (same fields, same types, same defaults), so a line is
//! counted or skipped as before; when it is skipped, the reason is the one [`Event`] gives.
//! Strings are borrowed unless they hold escapes.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

use crate::event::{
    Address, Capture, Cause, Event, EventType, Family, Kind, Link, Nexthop, Object, Outcome,
    RestoreOutcome, Route, Rule, Timestamp, Trigger,
};

/// [`Event`] without its allocations. Field names, types and defaults mirror it; a field the
/// report does not use is only checked (`_`-prefixed).
#[derive(serde::Deserialize)]
pub struct Row<'a> {
    pub schema_version: u32,
    pub ts: Timestamp,
    pub kind: Kind,
    #[serde(rename = "family")]
    _family: Option<Family>,
    pub cause: Cause,
    pub outcome: Outcome,
    pub errno: Option<i32>,
    #[serde(borrow)]
    pub error: Option<Str<'a>>,
    #[serde(rename = "capture")]
    _capture: Capture,
    #[serde(borrow)]
    pub netns: NetnsRow<'a>,
    #[serde(borrow)]
    pub actor: Option<ActorRow<'a>>,
    #[serde(rename = "request", borrow)]
    _request: Option<RequestRow<'a>>,
    // Objects are small and the report describes each one, so they are read in full.
    pub route: Option<Route>,
    pub rule: Option<Rule>,
    pub nexthop: Option<Nexthop>,
    pub link: Option<Link>,
    pub address: Option<Address>,
    #[serde(rename = "trigger", default)]
    _trigger: Option<Trigger>,
    #[serde(rename = "replacement", default)]
    _replacement: Option<Route>,
    /// Absent in captures older than restores: a removal, as [`Event`] reads it.
    #[serde(default)]
    pub event: EventType,
    #[serde(borrow, default)]
    pub restore: Option<RestoreRow<'a>>,
}

impl Row<'_> {
    /// The object the line names, as [`Event`] reads it, taken out of the row.
    pub fn take_object(&mut self) -> Object {
        Object::from_members(
            self.kind,
            self.route.take(),
            self.rule.take(),
            self.nexthop.take(),
            self.link.take(),
            self.address.take(),
        )
    }
}

/// [`crate::event::Restore`]: all of it is kept (restore events are few).
#[derive(serde::Deserialize)]
pub struct RestoreRow<'a> {
    #[serde(borrow)]
    pub policy: Str<'a>,
    pub outcome: RestoreOutcome,
    pub latency_us: Option<u64>,
    pub attempt: u32,
    pub errno: Option<i32>,
    #[serde(borrow)]
    pub error: Option<Str<'a>>,
    #[serde(borrow)]
    pub detail: Option<Str<'a>>,
    #[serde(borrow)]
    pub hint: Option<Str<'a>>,
}

#[derive(serde::Deserialize)]
pub struct NetnsRow<'a> {
    pub inode: u32,
    #[serde(borrow)]
    pub name: Option<Str<'a>>,
}

/// [`crate::event::Actor`]: what identifies the process is kept, the rest checked.
#[derive(serde::Deserialize)]
pub struct ActorRow<'a> {
    pub pid: u32,
    #[serde(rename = "tid")]
    _tid: u32,
    #[serde(borrow)]
    pub comm: Str<'a>,
    #[serde(borrow)]
    pub exe: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub cmdline: Str<'a>,
    #[serde(rename = "argv", borrow, default)]
    _argv: Each<Str<'a>>,
    #[serde(rename = "uid")]
    _uid: u32,
    #[serde(rename = "ppid")]
    _ppid: u32,
    #[serde(rename = "ancestry", borrow, default)]
    _ancestry: Each<AncestorRow<'a>>,
    #[serde(rename = "cgroup", borrow)]
    _cgroup: Option<Str<'a>>,
    #[serde(borrow)]
    pub unit: Option<Str<'a>>,
    #[serde(borrow)]
    pub container: Option<Str<'a>>,
}

/// [`crate::event::Ancestor`], checked.
#[derive(serde::Deserialize)]
struct AncestorRow<'a> {
    #[serde(rename = "pid")]
    _pid: u32,
    #[serde(rename = "comm", borrow)]
    _comm: Str<'a>,
}

/// [`crate::event::Request`], checked.
#[derive(serde::Deserialize)]
pub struct RequestRow<'a> {
    #[serde(rename = "syscall", borrow)]
    _syscall: Str<'a>,
    #[serde(rename = "op", borrow)]
    _op: Str<'a>,
    #[serde(rename = "seq")]
    _seq: Option<u32>,
    #[serde(rename = "nlmsg_flags")]
    _nlmsg_flags: Option<u16>,
    #[serde(rename = "ack_requested", default)]
    _ack_requested: bool,
}

/// A string, borrowed from the input when it holds no escapes.
#[derive(Default)]
pub struct Str<'a>(pub Cow<'a, str>);

impl Str<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

/// A sequence whose elements are checked as `T` and dropped.
struct Each<T>(PhantomData<T>);

impl<T> Default for Each<T> {
    fn default() -> Self {
        Each(PhantomData)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Each<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Each<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Each<T>, A::Error> {
                while seq.next_element::<T>()?.is_some() {}
                Ok(Each(PhantomData))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

/// A line as a [`Row`]; when it is not one, the reason [`Event`] gives, so skipped lines read
/// as they always did.
pub fn parse_line(line: &[u8]) -> Result<Row<'_>, String> {
    serde_json::from_slice::<Row>(line).map_err(|row_err| {
        match serde_json::from_slice::<Event>(line) {
            Err(e) => e.to_string(),
            Ok(_) => row_err.to_string(),
        }
    })
}

/// [`parse_line`] for a line known to be UTF-8: serde then skips validating each string on its
/// own (that was a seventh of a report's time); same rows, same reasons.
pub fn parse_str(line: &str) -> Result<Row<'_>, String> {
    serde_json::from_str::<Row>(line).map_err(|row_err| match serde_json::from_str::<Event>(line) {
        Err(e) => e.to_string(),
        Ok(_) => row_err.to_string(),
    })
}
