//! Names the ids of what the kernel's budgets suppressed: wall-clock times, the namespace's
//! name, the cgroup's path.

use crate::{
    capture::budget::Suppression,
    clock::Clock,
    event::{local_host, Suppressed},
};

use super::{CgroupPaths, NetnsNames};

pub struct Summaries {
    clock: Clock,
    netns: NetnsNames,
    cgroups: CgroupPaths,
}

impl Summaries {
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            netns: NetnsNames::new(),
            cgroups: CgroupPaths::new(),
        }
    }

    pub fn describe(&mut self, s: &Suppression) -> Suppressed {
        Suppressed::new(
            self.clock.wall(Clock::monotonic_ns()),
            self.netns.lookup(s.netns_ino),
            s.cgroup_id,
            self.cgroups.path(s.cgroup_id).map(str::to_owned),
            (s.uid, s.pid),
            (s.count, s.bytes, s.refused),
            (self.clock.wall(s.first_ns), self.clock.wall(s.last_ns)),
            local_host(),
        )
    }
}
