//! Building and sending a [`KernelRecord`].

use aya_ebpf::helpers::{
    bpf_get_current_task, bpf_get_current_task_btf, bpf_ktime_get_ns, bpf_probe_read_kernel_buf,
};
use routeguard_common::{
    context, counter, kind, mark, KernelFunctionConfig, KernelRecord, RecordHeader, WIRE_VERSION,
};

use super::{
    kconfig_field,
    marks::{self, Mark},
    requests,
};
use crate::programs::{
    kern::{bound, load, read},
    maps::{count, KERNEL_SCRATCH},
    rare::{self, rare, site, EVERY_NS},
    send::{self, wake_flags},
    task,
};

/// Filled in by the loader (`EbpfLoader::override_global("KCONFIG", …)`) before load.
#[unsafe(no_mangle)]
static KCONFIG: KernelFunctionConfig = KernelFunctionConfig::DEFAULT;

#[inline(always)]
pub fn kconfig() -> &'static KernelFunctionConfig {
    &KCONFIG
}

/// `PF_KTHREAD` (include/linux/sched.h), stable since 2.6.
const PF_KTHREAD: u32 = 0x0020_0000;

/// A scratch record for `hook`, with the context (who, why) filled in and everything else
/// zeroed, and this thread's mark (looked up once, here). The actor's details are announced
/// first when it is a process.
#[inline(always)]
pub fn begin(hook: u16) -> Option<(&'static mut KernelRecord, Option<Mark>)> {
    let rec = KERNEL_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch owned by this program invocation.
    let rec: &mut KernelRecord = unsafe { &mut *rec };
    rec.header = RecordHeader {
        kind: kind::KERNEL,
        version: WIRE_VERSION,
        len: core::mem::size_of::<KernelRecord>() as u32,
    };
    // SAFETY: helper without preconditions.
    rec.ts_ns = unsafe { bpf_ktime_get_ns() };
    rec.hook = hook;
    rec.netns_ino = 0;
    zero_from_mark(rec);
    task::current_info(&mut rec.task);
    rec.context = 0;
    rec.mark = mark::NONE;
    if marks::in_gc() {
        rec.context |= context::GC;
        return Some((rec, None));
    }
    // SAFETY: helper without preconditions; the task is typed, so its flags are a plain load.
    let task = unsafe { bpf_get_current_task_btf() } as u64;
    if load::<u32>(task, kconfig_field!(offsets.task_flags)).unwrap_or(0) & PF_KTHREAD != 0 {
        rec.context |= context::KTHREAD;
    }
    let held = marks::get();
    if let Some(m) = held {
        rec.mark = m.mark;
    }
    Some((rec, held))
}

/// Zeroes every field from `mark` up to `msg` (`msg_len` says how much of that is valid) with
/// word stores. Zeroed field by field, LLVM merges the stores into a call to `memset`, which on
/// BPF is a loop of byte stores (118 of them per record).
#[inline(always)]
fn zero_from_mark(rec: &mut KernelRecord) {
    const FROM: usize = core::mem::offset_of!(KernelRecord, mark);
    const TO: usize = core::mem::offset_of!(KernelRecord, msg);
    const _: () = assert!(FROM.is_multiple_of(8) && TO.is_multiple_of(8));
    let base = (rec as *mut KernelRecord).cast::<u8>();
    let mut off = FROM;
    while off < TO {
        // SAFETY: inside the record, 8-aligned (the record is, and FROM/TO are multiples of
        // 8); volatile, so it is not merged back into a memset.
        unsafe { core::ptr::write_volatile(base.add(off).cast::<u64>(), 0) };
        off += 8;
    }
}

/// Sends the record, first claiming the request it reports if the request hooks left that to
/// it (see [`emit`]).
#[inline(always)]
pub fn send(rec: &mut KernelRecord) {
    if shows_actor(rec) && rec.context & context::HAS_NLH != 0 {
        claim_deferred(rec);
    }
    emit(rec);
}

/// A process that may be shown: not a timer or kernel thread, nor a namespace's dismantling.
#[inline(always)]
fn shows_actor(rec: &KernelRecord) -> bool {
    rec.context & (context::GC | context::KTHREAD) == 0 && rec.mark != mark::NETNS_EXIT
}

/// Sends the record as it is; the actor's details go first when it is a process that may be
/// shown.
#[inline(always)]
pub fn emit(rec: &mut KernelRecord) {
    if shows_actor(rec) {
        // SAFETY: helper without preconditions.
        let task_ptr = unsafe { bpf_get_current_task() };
        task::announce(task_ptr, &rec.task);
        rec.context |= context::ANNOUNCED;
    }
    let len = core::mem::size_of::<KernelRecord>() as u64;
    if crate::programs::maps::EVENTS
        .output::<KernelRecord>(&*rec, wake_flags(len))
        .is_err()
    {
        count(counter::RINGBUF_FULL);
    }
}

/// A request of this thread left to the kernel functions (`requests`): this record reports it,
/// so the request's exit need not copy it, and the record takes its syscall.
#[inline(always)]
fn claim_deferred(rec: &mut KernelRecord) {
    if !matches!(
        rec.msg_type,
        send::RTM_DELROUTE | send::RTM_DELRULE | send::RTM_DELNEXTHOP
    ) {
        return;
    }
    if let Some(via) = requests::claim(rec.task.tid) {
        rec.syscall = via;
    }
}

/// `net.ns.inum` of a `struct net *` held as a plain number (read with a helper).
#[inline(always)]
pub fn netns_ino(net: u64) -> u32 {
    read::<u32>(net, kconfig_field!(offsets.net_ns_inum)).unwrap_or(0)
}

/// `net.ns.inum` of a typed `struct net *` (a hook's argument): a plain load.
#[inline(always)]
pub fn netns_ino_typed(net: u64) -> u32 {
    load::<u32>(net, kconfig_field!(offsets.net_ns_inum)).unwrap_or(0)
}

/// The request's netlink header (`struct nlmsghdr`, UAPI: len, type, flags, seq, pid).
#[inline(always)]
pub fn header_from(rec: &mut KernelRecord, nlh: u64) {
    if nlh == 0 {
        return;
    }
    if let Some(hdr) = read::<[u32; 4]>(nlh, 0) {
        rec.msg_type = hdr[1] as u16;
        rec.nlmsg_flags = (hdr[1] >> 16) as u16;
        rec.seq = hdr[2];
        rec.context |= context::HAS_NLH;
    }
}

/// `struct nl_info`: the request's header, its sender's port and the namespace.
#[inline(always)]
pub fn nl_info(rec: &mut KernelRecord, info: u64) {
    if info == 0 {
        return;
    }
    let nlh = read::<u64>(info, kconfig_field!(offsets.nli_nlh)).unwrap_or(0);
    header_from(rec, nlh);
    rec.portid = read::<u32>(info, kconfig_field!(offsets.nli_portid)).unwrap_or(0);
    if let Some(net) = read::<u64>(info, kconfig_field!(offsets.nli_net)) {
        rec.netns_ino = netns_ino(net);
    }
}

/// The first nexthop's device, interface index and gateway (`struct fib_nh_common`), from a
/// typed pointer (inside a hook argument): plain loads, except the arrays, which BTF only
/// lets a program load byte by byte.
#[inline(always)]
pub fn nh_common(rec: &mut KernelRecord, nhc: u64) {
    if let Some(oif) = load::<u32>(nhc, kconfig_field!(offsets.nhc_oif)) {
        rec.oif = oif;
    }
    if let Some(dev) = load::<u64>(nhc, kconfig_field!(offsets.nhc_dev)) {
        if rec.oif == 0 {
            rec.oif = load::<u32>(dev, kconfig_field!(offsets.dev_ifindex)).unwrap_or(0);
        }
        let name = kconfig_field!(offsets.dev_name);
        if let Some(n) = read::<[u8; 16]>(dev, name) {
            rec.dev = n;
        }
    }
    rec.gw_family = load::<u8>(nhc, kconfig_field!(offsets.nhc_gw_family)).unwrap_or(0);
    if rec.gw_family != 0 {
        if let Some(gw) = read::<[u8; 16]>(nhc, kconfig_field!(offsets.nhc_gw)) {
            rec.gateway = gw;
        }
    }
}

/// Copies up to `KERNEL_MSG_MAX` bytes of a netlink message from kernel memory.
#[inline(always)]
pub fn copy_msg(rec: &mut KernelRecord, nlh: u64) {
    let Some(len) = read::<u32>(nlh, 0) else {
        return;
    };
    // A bounded, non-negative length on every path: the 6.1 verifier checks the range.
    let len = (len as usize).min(routeguard_common::KERNEL_MSG_MAX);
    if len == 0 {
        return;
    }
    // A mask the verifier sees at the call (see `kern::bound`).
    let len = bound(
        len as u64,
        (routeguard_common::KERNEL_MSG_MAX * 2 - 1) as u64,
    ) as usize;
    if len > routeguard_common::KERNEL_MSG_MAX {
        return;
    }
    // SAFETY: reads kernel memory with fault handling into a buffer of at least `len` bytes.
    match unsafe { bpf_probe_read_kernel_buf(nlh as *const u8, &mut rec.msg[..len]) } {
        Ok(()) => rec.msg_len = len as u32,
        // Should not happen: the header was just read from the same message, which rtnetlink
        // is handling. Rate-limited in case it does for every record.
        Err(err) => rare!(
            Warn,
            site::KERNEL_MSG_UNREADABLE,
            EVERY_NS,
            "pid {}: reading {} bytes of the netlink message at a kernel function failed ({}); the record carries none",
            rare::pid(),
            len,
            err
        ),
    }
}
