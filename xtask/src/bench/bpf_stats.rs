//! The kernel's own accounting of routeguard's programs (BPF_ENABLE_STATS): run count and run
//! time of each program, so a bench can tell the in-kernel cost of the hooks apart from the
//! tracer's userspace competing for the CPUs (which on a 2-core host running a 2-vCPU VM is
//! most of what a traced run loses).
use std::{
    collections::BTreeMap,
    os::fd::OwnedFd,
    time::{Duration, SystemTime},
};

use aya::{
    programs::loaded_programs,
    sys::{enable_stats, Stats},
};

/// Statistics are collected while this lives.
pub struct Collecting(#[allow(dead_code)] OwnedFd);

/// Turns run-time statistics on (they cost a clock read per program run, on every program of
/// the machine, until dropped); None where the kernel refuses, with why.
pub fn collect() -> Result<Collecting, String> {
    enable_stats(Stats::RunTime)
        .map(Collecting)
        .map_err(|e| format!("BPF_ENABLE_STATS refused: {e}"))
}

/// Run time and runs of each program loaded at or after `since` (the tracer's, when nothing
/// else loads programs meanwhile: so in the VM, not necessarily on a shared host), by name.
pub fn by_program(since: SystemTime) -> BTreeMap<String, (Duration, u64)> {
    let mut all = BTreeMap::new();
    for info in loaded_programs().flatten() {
        if info.loaded_at().is_some_and(|at| at >= since) {
            let name = info.name_as_str().unwrap_or("?").to_owned();
            let entry: &mut (Duration, u64) = all.entry(name).or_default();
            entry.0 += info.run_time();
            entry.1 += info.run_count();
        }
    }
    all
}

/// What each program ran between two [`by_program`] readings.
pub fn delta(
    before: &BTreeMap<String, (Duration, u64)>,
    after: BTreeMap<String, (Duration, u64)>,
) -> BTreeMap<String, (Duration, u64)> {
    after
        .into_iter()
        .map(|(name, (time, runs))| {
            let (t0, r0) = before.get(&name).copied().unwrap_or_default();
            (name, (time.saturating_sub(t0), runs.saturating_sub(r0)))
        })
        .collect()
}

/// Sum over programs.
pub fn total(programs: &BTreeMap<String, (Duration, u64)>) -> (Duration, u64) {
    programs
        .values()
        .fold((Duration::ZERO, 0), |(t, r), (pt, pr)| (t + *pt, r + pr))
}
