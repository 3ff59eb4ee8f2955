//! An [`Event`] as JSON: the shape `docs/events.md` documents, which predates [`Object`]. The
//! object's kind is written as `kind`, and the object under its kind's key, between `request`
//! and `trigger`, with the other four keys `null`.
//!
//! Written by hand, field by field in the documented order (what serde's derive would write for
//! the old struct, with no intermediate value): the JSON sink writes every event through it.
//! Read through [`Wire`], the old struct itself, so a line is accepted, refused or defaulted
//! exactly as before, with the same messages; an event of a kind whose object is `null`
//! (routeguard never writes one) reads as that kind's object naming nothing, which describes it
//! alike.

use std::sync::Arc;

use serde::{ser::SerializeStruct, Deserialize, Deserializer, Serialize, Serializer};

use super::{
    Actor, Address, Capture, Cause, Event, EventType, Family, Host, Kind, Link, Netns, Nexthop,
    Object, Outcome, Request, Restore, Route, Rule, Timestamp, Trigger,
};

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

/// An event as the schema spells it: `kind` and an optional member per kind. Its name is
/// `Event`, so that serde's messages read as they did (`expected struct Event`). (In tests it
/// also writes itself, as the derive wrote the old struct, for [`Event`]'s own writing to be
/// compared with.)
mod schema {
    use super::*;

    #[derive(Deserialize)]
    #[cfg_attr(test, derive(Serialize))]
    pub(super) struct Event {
        pub(super) schema_version: u32,
        pub(super) ts: Timestamp,
        pub(super) kind: Kind,
        pub(super) family: Option<Family>,
        pub(super) cause: Cause,
        pub(super) outcome: Outcome,
        pub(super) errno: Option<i32>,
        pub(super) error: Option<String>,
        pub(super) capture: Capture,
        pub(super) netns: Netns,
        pub(super) actor: Option<Arc<Actor>>,
        pub(super) request: Option<Request>,
        pub(super) route: Option<Route>,
        pub(super) rule: Option<Rule>,
        pub(super) nexthop: Option<Nexthop>,
        pub(super) link: Option<Link>,
        pub(super) address: Option<Address>,
        #[serde(default)]
        pub(super) trigger: Option<Trigger>,
        #[serde(default)]
        pub(super) event: EventType,
        #[serde(default)]
        pub(super) restore: Option<Restore>,
        #[serde(default)]
        pub(super) replacement: Option<Route>,
        #[serde(default)]
        pub(super) host: Option<Arc<Host>>,
    }
}

use schema::Event as Wire;

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        let object = Object::from_members(w.kind, w.route, w.rule, w.nexthop, w.link, w.address);
        Ok(Event {
            schema_version: w.schema_version,
            ts: w.ts,
            family: w.family,
            cause: w.cause,
            outcome: w.outcome,
            errno: w.errno,
            error: w.error,
            capture: w.capture,
            netns: w.netns,
            actor: w.actor,
            request: w.request,
            object,
            trigger: w.trigger,
            event: w.event,
            restore: w.restore,
            replacement: w.replacement,
            host: w.host,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::fixtures::{full_event, full_object, route_event, rule_event};

    /// `ev` as the old struct held it.
    fn old(ev: &Event) -> Wire {
        let o = &ev.object;
        Wire {
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
            actor: ev.actor.clone(),
            request: ev.request.clone(),
            route: o.route().cloned(),
            rule: o.rule().cloned(),
            nexthop: o.nexthop().cloned(),
            link: o.link().cloned(),
            address: o.address().cloned(),
            trigger: ev.trigger.clone(),
            event: ev.event,
            restore: ev.restore.clone(),
            replacement: ev.replacement.clone(),
            host: ev.host.clone(),
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
