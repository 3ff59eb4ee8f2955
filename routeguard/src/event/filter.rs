//! Which events a user asked to see (`trace` flags; `report` reuses them).

use super::{Event, Family, Kind};

/// Every list is "any of"; an empty list matches everything. All lists must match.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub comms: Vec<String>,
    pub pids: Vec<u32>,
    pub units: Vec<String>,
    /// Namespace names (as under /run/netns, or `host`) or inode numbers.
    pub netns: Vec<String>,
    pub kinds: Vec<Kind>,
    pub family: Option<Family>,
    pub tables: Vec<u32>,
}

impl Filter {
    pub fn matches(&self, ev: &Event) -> bool {
        let actor = ev.actor.as_ref();
        let any = |list_empty: bool, hit: bool| list_empty || hit;
        any(
            self.comms.is_empty(),
            actor.is_some_and(|a| self.comms.contains(&a.comm)),
        ) && any(
            self.pids.is_empty(),
            actor.is_some_and(|a| self.pids.contains(&a.pid) || self.pids.contains(&a.tid)),
        ) && any(
            self.units.is_empty(),
            actor
                .and_then(|a| a.unit.as_ref())
                .is_some_and(|u| self.units.contains(u)),
        ) && any(
            self.netns.is_empty(),
            self.netns.iter().any(|n| netns_matches(n, ev)),
        ) && any(self.kinds.is_empty(), self.kinds.contains(&ev.kind()))
            && self.family.is_none_or(|f| ev.family == Some(f))
            && any(
                self.tables.is_empty(),
                ev.object.table().is_some_and(|t| self.tables.contains(&t)),
            )
    }
}

fn netns_matches(wanted: &str, ev: &Event) -> bool {
    ev.netns.name.as_deref() == Some(wanted) || wanted.parse::<u32>().ok() == Some(ev.netns.inode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::fixtures::sample_route_event;

    #[test]
    fn empty_filter_matches_everything() {
        assert!(Filter::default().matches(&sample_route_event()));
    }

    #[test]
    fn each_list_narrows() {
        let ev = sample_route_event();
        let f = |f: Filter| f.matches(&ev);
        assert!(f(Filter {
            comms: vec!["ip".into()],
            ..Default::default()
        }));
        assert!(!f(Filter {
            comms: vec!["networkd".into()],
            ..Default::default()
        }));
        assert!(f(Filter {
            tables: vec![77],
            ..Default::default()
        }));
        assert!(!f(Filter {
            tables: vec![254],
            ..Default::default()
        }));
        assert!(f(Filter {
            netns: vec!["blue".into()],
            ..Default::default()
        }));
        assert!(f(Filter {
            netns: vec!["4026532456".into()],
            ..Default::default()
        }));
        assert!(!f(Filter {
            kinds: vec![Kind::Rule],
            ..Default::default()
        }));
        assert!(!f(Filter {
            family: Some(Family::Inet6),
            ..Default::default()
        }));
        assert!(f(Filter {
            units: vec!["demo.service".into()],
            pids: vec![4242],
            ..Default::default()
        }));
    }
}
