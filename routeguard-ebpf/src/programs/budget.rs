//! Budgets (`routeguard_common::budget`): whether a removal request may go into the ring.
//!
//! At `sys_enter` rtnetlink has not checked anything yet, so this predicts its check: every
//! request but a GET needs `netlink_net_capable(skb, CAP_NET_ADMIN)` over the namespace of the
//! socket (`rtnetlink_rcv_msg`, net/core/rtnetlink.c). Requests predicted to be refused, and
//! privileged requests into namespaces other than the initial one (and those a protect policy
//! names), are budgeted per (namespace, cgroup); beyond the budget they are counted, not copied.

use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_ktime_get_ns,
};
use routeguard_common::{budget::SHARED_FACTOR, counter, Budget, BudgetKey};

use super::{
    kern::{config_field, read},
    maps::{count, BUDGETS, BUDGET_EXEMPT, BUDGET_LIMITS, BUDGET_SHARED, SELF_TGID},
    sock::Sock,
};

/// `include/uapi/linux/capability.h`
const CAP_NET_ADMIN: u64 = 12;
/// `MAX_USER_NS_LEVEL`: user namespaces nest at most 32 deep (kernel/user_namespace.c).
const USER_NS_LEVEL_MAX: u32 = 32;

/// Whether the current task holds CAP_NET_ADMIN over `net`, as `cap_capable` decides it
/// (security/commoncap.c, unchanged in substance from 4.x to 6.18): walk from the namespace's
/// owning user namespace up towards the task's; its own gives the effective set, an ancestor
/// of it none, and the task owning a child of its namespace on the way gives every capability.
/// `None` when an offset is missing or a read fails: nothing can be predicted.
///
/// Not predicted: rtnetlink also asks whether the socket's opener (`file->f_cred`) had the
/// capability, and an LSM may refuse. Both only make this say "privileged" of a request the
/// kernel refuses: such a request is copied, as every request was before budgets, and it takes
/// a privileged process to send it.
#[inline(always)]
pub fn may_admin(task: u64, net: u64) -> Option<bool> {
    let cred = read::<u64>(task, config_field!(offsets.task_cred))?;
    let cred_ns = read::<u64>(cred, config_field!(offsets.cred_user_ns))?;
    let mut ns = read::<u64>(net, config_field!(offsets.net_user_ns))?;
    let level_off = config_field!(offsets.user_ns_level);
    let parent_off = config_field!(offsets.user_ns_parent);
    let cred_level = read::<u32>(cred_ns, level_off)?;
    let mut i = 0;
    while i <= USER_NS_LEVEL_MAX {
        if ns == cred_ns {
            let caps = read::<u64>(cred, config_field!(offsets.cred_cap_effective))?;
            return Some(caps & (1 << CAP_NET_ADMIN) != 0);
        }
        let level = read::<u32>(ns, level_off)?;
        if level <= cred_level {
            return Some(false);
        }
        let parent = read::<u64>(ns, parent_off)?;
        if parent == cred_ns {
            let owner = read::<u32>(ns, config_field!(offsets.user_ns_owner))?;
            let euid = read::<u32>(cred, config_field!(offsets.cred_euid))?;
            if owner == euid {
                return Some(true);
            }
        }
        ns = parent;
        i += 1;
    }
    Some(false)
}

/// Whether a removal request of `bytes` from the current task on `sock` goes into the ring.
/// Counts it in the sender's budget when it does not.
#[inline(always)]
pub fn admit(task: u64, sock: &Sock, bytes: u64) -> bool {
    let (rate, burst) = limits();
    if rate == 0 {
        return true;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // routeguard's own restores.
    if SELF_TGID.get(0).is_some_and(|me| *me == tgid) {
        return true;
    }
    // Unknown (a missing offset): as privileged, so only the namespace decides, as before.
    let privileged = may_admin(task, sock.net).unwrap_or(true);
    if privileged {
        let host = config_field!(host_netns_ino);
        // SAFETY: the value is only tested for presence.
        let exempt = unsafe { BUDGET_EXEMPT.get(&sock.netns_ino) }.is_some();
        if (host != 0 && sock.netns_ino == host) || exempt {
            return true;
        }
    }
    // SAFETY: helpers without preconditions.
    let (now, cgroup_id) = unsafe { (bpf_ktime_get_ns(), bpf_get_current_cgroup_id()) };
    let key = BudgetKey {
        netns_ino: sock.netns_ino,
        _pad: 0,
        cgroup_id,
    };
    let budget = match BUDGETS.get_ptr_mut(&key) {
        Some(b) => b,
        None => {
            let fresh = Budget {
                tokens: burst,
                refilled_ns: now,
                ..Budget::default()
            };
            let _ = BUDGETS.insert(&key, &fresh, 0);
            match BUDGETS.get_ptr_mut(&key) {
                Some(b) => b,
                // The map refused even an LRU insert: copy rather than lose the request.
                None => return true,
            }
        }
    };
    // SAFETY: live map values. Updates from other CPUs may interleave: a bucket can then grant
    // one extra request per CPU; the counts below are atomic and exact.
    let budget = unsafe { &mut *budget };
    refill(budget, now, rate, burst);
    if let Some(shared) = BUDGET_SHARED.get_ptr_mut(0) {
        // SAFETY: as above.
        let shared = unsafe { &mut *shared };
        refill(shared, now, rate * SHARED_FACTOR, burst * SHARED_FACTOR);
        if budget.tokens >= bytes && shared.tokens >= bytes {
            budget.tokens -= bytes;
            shared.tokens -= bytes;
            return true;
        }
    }
    suppress(budget, now, bytes, !privileged);
    false
}

/// The rate and burst the daemon last set, else those the programs were loaded with.
#[inline(always)]
fn limits() -> (u64, u64) {
    match BUDGET_LIMITS.get(0) {
        Some(set) if set.set != 0 => (u64::from(set.rate), u64::from(set.burst)),
        _ => (
            u64::from(config_field!(budget_rate)),
            u64::from(config_field!(budget_burst)),
        ),
    }
}

/// Adds what `rate` bytes a second earned since the last refill, up to `burst`.
#[inline(always)]
fn refill(bucket: &mut Budget, now: u64, rate: u64, burst: u64) {
    let elapsed = now.saturating_sub(bucket.refilled_ns);
    // Microseconds, at most 1,000 s: times a rate below 2^32 it cannot overflow.
    let us = (elapsed / 1000).min(1_000_000_000);
    let earned = us * rate / 1_000_000;
    if earned == 0 {
        // Not yet a byte: keep the time, so that fractions add up.
        return;
    }
    bucket.tokens = (bucket.tokens + earned).min(burst);
    bucket.refilled_ns = now;
}

#[inline(always)]
fn suppress(budget: &mut Budget, now: u64, bytes: u64, refused: bool) {
    let add = |field: &mut u64, n: u64| atomic_add(field, n);
    add(&mut budget.suppressed, 1);
    add(&mut budget.suppressed_bytes, bytes);
    if refused {
        add(&mut budget.refused, 1);
        count(counter::SUPPRESSED_REFUSED);
    } else {
        count(counter::SUPPRESSED_NAMESPACE);
    }
    if budget.first_ns == 0 {
        budget.first_ns = now;
    }
    budget.last_ns = now;
    budget.uid = bpf_get_current_uid_gid() as u32;
    budget.pid = (bpf_get_current_pid_tgid() >> 32) as u32;
}

/// `*field += n` as one BPF atomic add (`BPF_ATOMIC | BPF_ADD`, since 3.x as `BPF_XADD`): the
/// bpfel target offers no `AtomicU64::fetch_add`, and other CPUs update the same map value.
#[inline(always)]
fn atomic_add(field: &mut u64, n: u64) {
    let ptr = field as *mut u64;
    // SAFETY: `ptr` is a valid, 8-byte aligned u64 inside a map value; the instruction only
    // adds to it.
    unsafe {
        core::arch::asm!(
            "lock *(u64 *)({ptr} + 0) += {n}",
            ptr = in(reg) ptr,
            n = in(reg) n,
            options(nostack, preserves_flags),
        );
    }
}
