//! What travels beside an event: the kernel's own description of the object it removed (only the
//! restore engine needs it, to re-add the object with every attribute the kernel had), and the
//! evidence its outcome rests on (counted for the summary). Sinks, filters and the report never
//! see either.

use std::{fmt, sync::Arc};

use super::{Event, Outcome};

/// The kernel's own netlink description of an object: the body after the `nlmsghdr` of the
/// notification or dump reply it came from, including the attributes routeguard does not
/// decode. Shared, not copied, by whoever holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct KernelBody(Arc<[u8]>);

impl KernelBody {
    pub fn new(body: &[u8]) -> Self {
        Self(body.into())
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for KernelBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KernelBody({} bytes)", self.0.len())
    }
}

/// An event as the correlator releases it, with what the kernel said of its object and what its
/// outcome rests on.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub event: Event,
    /// The kernel's description of the removed route or rule, when the kernel gave one (its
    /// notification of the removal, or the dump that found it gone); `None` when only the
    /// request named the object.
    pub kernel: Option<KernelBody>,
    /// What the event's outcome rests on.
    pub evidence: Evidence,
}

impl Observed {
    /// An event with nothing beside it and no evidence.
    pub fn alone(event: Event) -> Self {
        Self {
            event,
            kernel: None,
            evidence: Evidence::None,
        }
    }

    /// The events of `observed`, in order, without what was beside them.
    pub fn events(observed: Vec<Observed>) -> Vec<Event> {
        observed.into_iter().map(|o| o.event).collect()
    }
}

/// What the kernel told that an outcome rests on, strongest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Evidence {
    /// The kernel's reply to the request (NLMSG_ERROR, 0 or an errno).
    Ack,
    /// The kernel's notification of the removal, naming the request (its port id and sequence
    /// number) or nobody (what the kernel removed itself), copied in the kernel before any socket
    /// could drop it, or heard by the route mirror.
    Notification,
    /// A record from the kernel's own deletion function (the kernel-function path).
    KernelFunction,
    /// The return value of the ioctl.
    Ioctl,
    /// Absence from a re-dump of the namespace's routes: a route a link-down or address removal
    /// flushed without announcing it (IPv4 says nothing then).
    Redump,
    /// routeguard's BPF LSM program refused the send (`denied`) or let it through in a dry run
    /// (`would-deny`): its own verdict, before rtnetlink.
    Lsm,
    /// Nothing from the kernel: an `unknown` outcome, or a removal inferred from the mirror's
    /// last state (what a destroyed namespace held).
    None,
}

impl Evidence {
    /// In the order the outcomes line lists them.
    /// (`lsm` is left out: no removal rests on it.)
    pub const ALL: [Evidence; 6] = [
        Evidence::Ack,
        Evidence::Notification,
        Evidence::KernelFunction,
        Evidence::Ioctl,
        Evidence::Redump,
        Evidence::None,
    ];

    /// `ack`, `notification`, `kernel-function`, `ioctl`, `re-dump`, `none`.
    pub fn name(self) -> &'static str {
        match self {
            Evidence::Ack => "ack",
            Evidence::Notification => "notification",
            Evidence::KernelFunction => "kernel-function",
            Evidence::Ioctl => "ioctl",
            Evidence::Redump => "re-dump",
            Evidence::Lsm => "lsm",
            Evidence::None => "none",
        }
    }
}

/// How removals ended, and what each `removed` rests on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcomes {
    /// `removed`, by [`Evidence`] (indexed as [`Evidence::ALL`]).
    pub removed: [u64; 6],
    pub failed: u64,
    pub unknown: u64,
    /// Refused by the LSM program (`denied`), or let through in a dry run (`would-deny`).
    pub denied: u64,
    pub would_deny: u64,
}

impl Outcomes {
    /// Counts one removal event (restore answers are not removals and are not counted).
    pub fn count(&mut self, observed: &Observed) {
        self.tally(&observed.event, observed.evidence);
    }

    /// Counts `event`, whose outcome rests on `evidence`.
    pub fn tally(&mut self, event: &Event, evidence: Evidence) {
        if event.event != super::EventType::Removal {
            return;
        }
        match event.outcome {
            Outcome::Removed => {
                let at = Evidence::ALL
                    .iter()
                    .position(|e| *e == evidence)
                    .unwrap_or(Evidence::ALL.len() - 1);
                self.removed[at] += 1;
            }
            Outcome::Failed => self.failed += 1,
            Outcome::Unknown => self.unknown += 1,
            Outcome::Denied => self.denied += 1,
            Outcome::WouldDeny => self.would_deny += 1,
        }
    }

    /// `removed` resting on `evidence`.
    pub fn removed_by(&self, evidence: Evidence) -> u64 {
        Evidence::ALL
            .iter()
            .position(|e| *e == evidence)
            .map_or(0, |at| self.removed[at])
    }

    pub fn removed(&self) -> u64 {
        self.removed.iter().sum()
    }
}

/// `removed N (ack A, notification B, kernel-function C, ioctl D, re-dump E, none F), failed G,
/// unknown U`: what `trace` prints at exit after `routeguard: outcomes:` (the benches parse it).
impl fmt::Display for Outcomes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let by: Vec<String> = Evidence::ALL
            .iter()
            .map(|e| format!("{} {}", e.name(), self.removed_by(*e)))
            .collect();
        write!(
            f,
            "removed {} ({}), failed {}, unknown {}",
            self.removed(),
            by.join(", "),
            self.failed,
            self.unknown
        )?;
        // Only with prevention at work: the benches parse the line above as it was.
        if self.denied + self.would_deny > 0 {
            write!(
                f,
                ", denied {}, would-deny {}",
                self.denied, self.would_deny
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::fixtures;

    #[test]
    fn outcomes_are_counted_by_evidence_and_printed_in_order() {
        let mut outcomes = Outcomes::default();
        let removed = |evidence| Observed {
            evidence,
            ..Observed::alone(fixtures::route_event())
        };
        for evidence in [
            Evidence::Notification,
            Evidence::Notification,
            Evidence::Ack,
        ] {
            outcomes.count(&removed(evidence));
        }
        let mut unknown = Observed::alone(fixtures::route_event());
        unknown.event.outcome = Outcome::Unknown;
        outcomes.count(&unknown);
        assert_eq!(
            outcomes.to_string(),
            "removed 3 (ack 1, notification 2, kernel-function 0, ioctl 0, re-dump 0, none 0), \
             failed 0, unknown 1"
        );
    }
}
