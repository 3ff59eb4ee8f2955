//! Events as read, borrowing their process strings from the text they are read from.
//!
//! [`EventRef`] is the event's JSON as `docs/events.md` spells it: `kind` and an optional member
//! per kind, the other fields as [`Event`] holds them. It is how every event is read: an
//! [`Event`] is an [`EventRef`] made owned (`wire.rs`), so both accept, refuse and default a line
//! alike, with the same messages. A reader that keeps little of each line (`routeguard report`
//! reads a million of them) reads [`EventRef`]s and copies only what it keeps: the actor, the
//! most repeated and longest part of a line, is borrowed ([`ActorRef`]); the rest is as small
//! as in [`Event`].
//!
//! A string holding an escape cannot be borrowed; it is copied (`Cow::Owned`).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::{self, Deserialize, Deserializer, Visitor};

use super::{Actor, Ancestor, Event, Host, Object};

pub use named::{Actor as ActorRef, Ancestor as AncestorRef, Event as EventRef, Host as HostRef};

/// The borrowed types under the names of the owned ones, which serde's messages give (`expected
/// struct Event`, `struct Actor with 12 elements`): a line is refused in the words it was when
/// the owned types were what serde read.
mod named {
    use std::borrow::Cow;

    #[cfg(test)]
    use serde::Serialize;

    use super::super::{
        Address, Capture, Cause, EventType, Family, Kind, Link, Netns, Nexthop, Outcome, Pod,
        Request, Restore, Route, Rule, Timestamp, Trigger,
    };
    use super::{each, optional};

    /// An event as its JSON holds it. (In tests it also writes itself, as a derive writes a
    /// struct, for [`Event`](super::Event)'s own writing to be compared with.)
    #[derive(Clone, Debug, serde::Deserialize)]
    #[cfg_attr(test, derive(Serialize))]
    pub struct Event<'a> {
        pub schema_version: u32,
        pub ts: Timestamp,
        pub kind: Kind,
        pub family: Option<Family>,
        pub cause: Cause,
        pub outcome: Outcome,
        pub errno: Option<i32>,
        pub error: Option<String>,
        pub capture: Capture,
        pub netns: Netns,
        #[serde(borrow)]
        pub actor: Option<Actor<'a>>,
        pub request: Option<Request>,
        pub route: Option<Route>,
        pub rule: Option<Rule>,
        pub nexthop: Option<Nexthop>,
        pub link: Option<Link>,
        pub address: Option<Address>,
        // The three members most events leave `null` are boxed: they were a third of the
        // struct's size, which a reader of a million lines moves several times a line.
        #[serde(default)]
        pub trigger: Option<Box<Trigger>>,
        #[serde(default)]
        pub event: EventType,
        #[serde(default)]
        pub restore: Option<Box<Restore>>,
        #[serde(default)]
        pub replacement: Option<Box<Route>>,
        // Every line a host's routeguard writes names it, the same each time: borrowed, so
        // reading it copies nothing.
        #[serde(borrow, default)]
        pub host: Option<Host<'a>>,
    }

    /// [`Actor`](super::Actor), its strings borrowed.
    #[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
    #[cfg_attr(test, derive(Serialize))]
    pub struct Actor<'a> {
        pub pid: u32,
        pub tid: u32,
        #[serde(borrow)]
        pub comm: Cow<'a, str>,
        #[serde(borrow, default, deserialize_with = "optional")]
        pub exe: Option<Cow<'a, str>>,
        #[serde(default)]
        pub exe_dev: Option<u64>,
        #[serde(default)]
        pub exe_inode: Option<u64>,
        #[serde(borrow, default)]
        pub cmdline: Cow<'a, str>,
        #[serde(borrow, default, deserialize_with = "each")]
        pub argv: Vec<Cow<'a, str>>,
        pub uid: u32,
        pub ppid: u32,
        #[serde(borrow, default)]
        pub ancestry: Vec<Ancestor<'a>>,
        #[serde(borrow, default, deserialize_with = "optional")]
        pub cgroup: Option<Cow<'a, str>>,
        #[serde(default)]
        pub cgroup_id: Option<u64>,
        #[serde(borrow, default, deserialize_with = "optional")]
        pub unit: Option<Cow<'a, str>>,
        #[serde(borrow, default, deserialize_with = "optional")]
        pub container: Option<Cow<'a, str>>,
        #[serde(default)]
        pub pod: Option<Pod>,
    }

    /// [`Host`](super::Host), its names borrowed.
    #[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
    #[cfg_attr(test, derive(Serialize))]
    pub struct Host<'a> {
        #[serde(borrow)]
        pub name: Cow<'a, str>,
        #[serde(borrow, default, deserialize_with = "optional")]
        pub machine_id: Option<Cow<'a, str>>,
        #[serde(borrow, default, deserialize_with = "optional")]
        pub node: Option<Cow<'a, str>>,
    }

    /// [`Ancestor`](super::Ancestor), its name borrowed.
    #[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
    #[cfg_attr(test, derive(Serialize))]
    pub struct Ancestor<'a> {
        pub pid: u32,
        #[serde(borrow)]
        pub comm: Cow<'a, str>,
    }
}

impl EventRef<'_> {
    /// The object the event names: the member of its kind (see [`Object::from_members`]), taken
    /// out.
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

    pub fn into_owned(mut self) -> Event {
        let object = self.take_object();
        Event {
            schema_version: self.schema_version,
            ts: self.ts,
            family: self.family,
            cause: self.cause,
            outcome: self.outcome,
            errno: self.errno,
            error: self.error,
            capture: self.capture,
            netns: self.netns,
            actor: self.actor.map(|a| Arc::new(a.into_owned())),
            request: self.request,
            object,
            trigger: self.trigger.map(|t| *t),
            event: self.event,
            restore: self.restore.map(|r| *r),
            replacement: self.replacement.map(|r| *r),
            host: self.host.map(|h| Arc::new(h.into_owned())),
        }
    }
}

impl ActorRef<'_> {
    pub fn into_owned(self) -> Actor {
        let owned = |s: Option<Cow<str>>| s.map(Cow::into_owned);
        Actor {
            pid: self.pid,
            tid: self.tid,
            comm: self.comm.into_owned(),
            exe: owned(self.exe),
            exe_dev: self.exe_dev,
            exe_inode: self.exe_inode,
            cmdline: self.cmdline.into_owned(),
            argv: self.argv.into_iter().map(Cow::into_owned).collect(),
            uid: self.uid,
            ppid: self.ppid,
            ancestry: self
                .ancestry
                .into_iter()
                .map(|a| Ancestor {
                    pid: a.pid,
                    comm: a.comm.into_owned(),
                })
                .collect(),
            cgroup: owned(self.cgroup),
            cgroup_id: self.cgroup_id,
            unit: owned(self.unit),
            container: owned(self.container),
            pod: self.pod,
        }
    }
}

impl HostRef<'_> {
    pub fn into_owned(self) -> Host {
        Host {
            name: self.name.into_owned(),
            machine_id: self.machine_id.map(Cow::into_owned),
            node: self.node.map(Cow::into_owned),
        }
    }
}

/// A string, borrowed when it can be: serde borrows a `Cow<str>` field marked `borrow`, but
/// not one inside an `Option` or a `Vec`.
struct Borrowed<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Borrowed<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Borrowed<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Borrowed<'a>, E> {
                Ok(Borrowed(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Borrowed<'a>, E> {
                Ok(Borrowed(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Borrowed<'a>, E> {
                Ok(Borrowed(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

fn optional<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    Ok(Option::<Borrowed>::deserialize(d)?.map(|s| s.0))
}

fn each<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Vec<Cow<'a, str>>, D::Error> {
    let strings = Vec::<Borrowed>::deserialize(d)?;
    Ok(strings.into_iter().map(|s| s.0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::fixtures::full_event;

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let line = serde_json::to_string(&full_event()).unwrap();
        let ev: EventRef = serde_json::from_str(&line).unwrap();
        let a = ev.actor.as_ref().unwrap();
        let borrowed = |s: &Cow<str>| matches!(s, Cow::Borrowed(_));
        assert!(borrowed(&a.comm) && borrowed(&a.cmdline));
        assert!(a.exe.as_ref().is_some_and(borrowed));
        assert!(a.argv.iter().all(borrowed) && !a.argv.is_empty());
        assert!(a.ancestry.iter().all(|p| borrowed(&p.comm)));
        let h = ev.host.as_ref().unwrap();
        assert!(borrowed(&h.name) && h.machine_id.as_ref().is_some_and(borrowed));
        let escaped = line.replacen("\"comm\":\"", "\"comm\":\"\\u0078", 1);
        let ev: EventRef = serde_json::from_str(&escaped).unwrap();
        let comm = &ev.actor.as_ref().unwrap().comm;
        assert!(
            matches!(comm, Cow::Owned(c) if c.starts_with('x')),
            "{comm:?}"
        );
        // From a reader nothing can be borrowed from: the same event.
        let read: Event = serde_json::from_reader(line.as_bytes()).unwrap();
        assert_eq!(read, full_event());
    }

    #[test]
    fn lines_are_refused_in_the_owned_types_words() {
        let line = serde_json::to_string(&full_event()).unwrap();
        let err = |l: &str| serde_json::from_str::<Event>(l).unwrap_err().to_string();
        for (line, message) in [
            (
                "[]".to_string(),
                "invalid length 0, expected struct Event with 22 elements",
            ),
            (
                line.replacen("\"actor\":{", "\"actor\":[1],\"x\":{", 1),
                "invalid length 1, expected struct Actor with 16 elements",
            ),
            (
                line.replacen("\"ancestry\":[{", "\"ancestry\":[7,{", 1),
                "invalid type: integer `7`, expected struct Ancestor",
            ),
            (
                line.replacen("\"host\":{", "\"host\":7,\"x\":{", 1),
                "invalid type: integer `7`, expected struct Host",
            ),
            (
                line.replacen("\"exe\":\"", "\"exe\":5,\"x\":\"", 1),
                "invalid type: integer `5`, expected a string",
            ),
            (
                line.replacen("\"argv\":[\"", "\"argv\":[null,\"", 1),
                "invalid type: null, expected a string",
            ),
        ] {
            assert!(err(&line).starts_with(message), "{}: {message}", err(&line));
        }
    }
}
