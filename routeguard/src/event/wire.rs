//! An [`Event`] as JSON: the shape `docs/events.md` documents, which predates
//! [`Object`](super::Object). The object's kind is written as `kind`, and the object under its
//! kind's key, between `request` and `trigger`, with the other four keys `null`.
//!
//! Written by hand, field by field in the documented order (what serde's derive would write for
//! the old struct, with no intermediate value): the JSON sink writes every event through it.
//! Read through [`EventRef`], the old struct with its process strings borrowed, so a line is
//! accepted, refused or defaulted exactly as before, with the same messages; an event of a kind
//! whose object is `null` (routeguard never writes one) reads as that kind's object naming
//! nothing, which describes it alike.

use serde::{ser::SerializeStruct, Deserialize, Deserializer, Serialize, Serializer};

use super::{Actor, ActorRef, Event, EventRef};

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let object = &self.object;
        let mut e = s.serialize_struct("Event", 22)?;
        e.serialize_field("schema_version", &self.schema_version)?;
        e.serialize_field("ts", &self.ts)?;
        e.serialize_field("kind", &object.kind())?;
        e.serialize_field("family", &self.family)?;
        e.serialize_field("cause", &self.cause)?;
        e.serialize_field("outcome", &self.outcome)?;
        e.serialize_field("errno", &self.errno)?;
        e.serialize_field("error", &self.error)?;
        e.serialize_field("capture", &self.capture)?;
        e.serialize_field("netns", &self.netns)?;
        e.serialize_field("actor", &self.actor)?;
        e.serialize_field("request", &self.request)?;
        e.serialize_field("route", &object.route())?;
        e.serialize_field("rule", &object.rule())?;
        e.serialize_field("nexthop", &object.nexthop())?;
        e.serialize_field("link", &object.link())?;
        e.serialize_field("address", &object.address())?;
        e.serialize_field("trigger", &self.trigger)?;
        e.serialize_field("event", &self.event)?;
        e.serialize_field("restore", &self.restore)?;
        e.serialize_field("replacement", &self.replacement)?;
        e.serialize_field("host", &self.host)?;
        e.end()
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        EventRef::deserialize(d).map(EventRef::into_owned)
    }
}

impl<'de> Deserialize<'de> for Actor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ActorRef::deserialize(d).map(ActorRef::into_owned)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::event::fixtures::{full_event, full_object, route_event, rule_event};
    use crate::event::{AncestorRef, HostRef, Kind, Object};

    /// `ev` as the old struct held it, its process strings borrowed.
    fn old(ev: &Event) -> EventRef<'_> {
        let o = &ev.object;
        EventRef {
            schema_version: ev.schema_version,
            ts: ev.ts,
            kind: o.kind(),
            family: ev.family,
            cause: ev.cause,
            outcome: ev.outcome,
            errno: ev.errno,
            error: ev.error.clone(),
            capture: ev.capture,
            netns: ev.netns.clone(),
            actor: ev.actor.as_deref().map(borrowed),
            request: ev.request.clone(),
            route: o.route().cloned(),
            rule: o.rule().cloned(),
            nexthop: o.nexthop().cloned(),
            link: o.link().cloned(),
            address: o.address().cloned(),
            trigger: ev.trigger.clone().map(Box::new),
            event: ev.event,
            restore: ev.restore.clone().map(Box::new),
            replacement: ev.replacement.clone().map(Box::new),
            host: ev.host.as_deref().map(|h| HostRef {
                name: Cow::Borrowed(&h.name),
                machine_id: h.machine_id.as_deref().map(Cow::Borrowed),
                node: h.node.as_deref().map(Cow::Borrowed),
            }),
        }
    }

    fn borrowed(a: &Actor) -> ActorRef<'_> {
        fn cow(s: &Option<String>) -> Option<Cow<'_, str>> {
            s.as_deref().map(Cow::Borrowed)
        }
        ActorRef {
            pid: a.pid,
            tid: a.tid,
            comm: Cow::Borrowed(&a.comm),
            exe: cow(&a.exe),
            exe_dev: a.exe_dev,
            exe_inode: a.exe_inode,
            cmdline: Cow::Borrowed(&a.cmdline),
            argv: a.argv.iter().map(|s| Cow::Borrowed(s.as_str())).collect(),
            uid: a.uid,
            ppid: a.ppid,
            ancestry: a
                .ancestry
                .iter()
                .map(|p| AncestorRef {
                    pid: p.pid,
                    comm: Cow::Borrowed(&p.comm),
                })
                .collect(),
            cgroup: cow(&a.cgroup),
            cgroup_id: a.cgroup_id,
            unit: cow(&a.unit),
            container: cow(&a.container),
            pod: a.pod.clone(),
        }
    }

    fn every_shape() -> Vec<Event> {
        let mut events = vec![route_event(), rule_event(), full_event()];
        for kind in [
            Kind::Route,
            Kind::Rule,
            Kind::Nexthop,
            Kind::Link,
            Kind::Address,
        ] {
            events.push(Event {
                object: full_object(kind),
                ..full_event()
            });
            events.push(Event {
                object: Object::unnamed(kind),
                actor: None,
                request: None,
                ..rule_event()
            });
        }
        events
    }

    #[test]
    fn written_byte_for_byte_as_the_old_struct_and_read_back() {
        for ev in every_shape() {
            let line = serde_json::to_string(&ev).unwrap();
            assert_eq!(line, serde_json::to_string(&old(&ev)).unwrap());
            assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), ev, "{line}");
        }
    }

    #[test]
    fn a_kind_without_its_member_reads_as_its_object_naming_nothing() {
        let mut v = serde_json::to_value(route_event()).unwrap();
        v["kind"] = "rule".into();
        let ev: Event = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(ev.object, Object::unnamed(Kind::Rule));
        // Not a member of the schema: refused as before, with the old struct's words.
        v["kind"] = "Route".into();
        let err = serde_json::from_value::<Event>(v).unwrap_err().to_string();
        assert!(err.starts_with("unknown variant `Route`"), "{err}");
        let err = serde_json::from_str::<Event>("[]").unwrap_err().to_string();
        assert!(err.contains("struct Event"), "{err}");
    }
}
