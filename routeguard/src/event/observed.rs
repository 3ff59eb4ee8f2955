//! What travels beside an event: the kernel's own description of the object it removed. Only the
//! restore engine needs it (to re-add the object with every attribute the kernel had); sinks,
//! filters and the report never see it.

use std::{fmt, sync::Arc};

use super::Event;

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

/// An event as the correlator releases it, with what the kernel said of its object.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub event: Event,
    /// The kernel's description of the removed route or rule, when the kernel gave one (its
    /// notification of the removal, or the dump that found it gone); `None` when only the
    /// request named the object.
    pub kernel: Option<KernelBody>,
}

impl Observed {
    /// An event with nothing beside it.
    pub fn alone(event: Event) -> Self {
        Self {
            event,
            kernel: None,
        }
    }

    /// The events of `observed`, in order, without what was beside them.
    pub fn events(observed: Vec<Observed>) -> Vec<Event> {
        observed.into_iter().map(|o| o.event).collect()
    }
}
