//! Prevention: the BPF LSM program on `netlink_send` refuses a NETLINK_ROUTE send (EPERM) when
//! one of its messages could remove an object a deny entry protects, and the sender is neither
//! allowed nor already bound to be refused by rtnetlink's own CAP_NET_ADMIN check.
//!
//! `security_netlink_send` runs in `netlink_sendmsg` after the whole send was copied into one
//! linear skb and before `netlink_unicast` hands it to rtnetlink (net/netlink/af_netlink.c,
//! 6.1: 1862-1877, 6.12: 1883-1898). Refused, the sender's sendmsg returns -1/EPERM, rtnetlink
//! never sees the skb, and no message of the batch is acted on.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_task, bpf_probe_read_kernel_buf},
    macros::{lsm, map},
    maps::{Array, HashMap},
    programs::LsmContext,
};
use routeguard_common::{
    counter,
    prevent::{deny_kind, DenySelector, DenyState, ExeKey, DENY_MAX},
    request_flags, RequestRecord, PAYLOAD_HALF,
};

use super::{
    budget,
    kern::{bound, config_field, read},
    maps::{count, REQUEST_SCRATCH, SELF_TGID},
    send::{
        self, NLMSG_HDRLEN, NLM_F_REPLACE, NLM_F_REQUEST, RTM_DELROUTE, RTM_DELRULE, RTM_NEWROUTE,
    },
    sock::{self, Sock},
};

/// Entry 0: how many selectors are valid, and whether this is a dry run.
#[map]
pub static DENY_STATE: Array<DenyState> = Array::with_max_entries(1, 0);

/// The deny entries (`DenyState::count` of them).
#[map]
pub static DENY_SELECTORS: Array<DenySelector> = Array::with_max_entries(DENY_MAX, 0);

/// Network namespace inode → mask of the deny entries in force there (key 0: the entries of
/// every namespace). Filled by the loader, so the program needs no loop over the selectors to
/// refuse a send it cannot parse (a loop that accumulates a mask multiplies the verifier's
/// states: 6.1 gave up after 1M instructions).
#[map]
pub static DENY_NETNS: HashMap<u32, u64> = HashMap::with_max_entries(DENY_MAX * 2, 0);

/// cgroup v2 id → mask of the deny entries that allow it.
#[map]
pub static ALLOW_CGROUP: HashMap<u64, u64> = HashMap::with_max_entries(256, 0);

/// Executable (device, inode) → mask of the deny entries that allow it.
#[map]
pub static ALLOW_EXE: HashMap<ExeKey, u64> = HashMap::with_max_entries(256, 0);

const EPERM: i32 = 1;
/// `struct fib_rule_hdr` and `struct rtmsg` are both 12 bytes (UAPI).
const FAMILY_HDR: u32 = 12;
const AF_INET: u8 = 2;
/// Messages walked per send. A 208 KiB default send buffer holds at most 13,312 minimal
/// messages; a longer send in a namespace with a deny entry is refused whole (`unparsed`).
const MAX_MESSAGES: u32 = 16384;
/// Attributes decoded per message: a delete names a handful.
const MAX_ATTRS: u32 = 16;
/// Sends are read from at most this offset: a message starting beyond it is unparsed.
const POS_MASK: u64 = (1 << 20) - 1;
/// FRA_PRIORITY / RTA_PRIORITY, FRA_TABLE / RTA_TABLE, RTA_DST (UAPI).
const ATTR_PRIORITY: u16 = 6;
const ATTR_TABLE: u16 = 15;
const RTA_DST: u16 = 1;
const RT_TABLE_MAIN: u32 = 254;

/// The walk's state, on the program's stack, handed to each `bpf_loop` callback.
#[repr(C)]
struct Walk {
    /// `skb->data` and `skb->len`.
    data: u64,
    len: u32,
    /// Offset of the next message.
    pos: u32,
    /// Namespace the send acts in.
    netns_ino: u32,
    /// Valid selectors.
    selectors: u32,
    /// Bit per deny entry a message of the send could match.
    matched: u64,
    /// A removal message could not be decoded, or the walk stopped before the end.
    unparsed: u32,
    _pad: u32,
}

/// A removal message, decoded as far as the selectors need.
#[repr(C)]
struct Asked {
    kind: u8,
    family: u8,
    replace: bool,
    dst_len: u8,
    /// As requested: 0 unset (rules: any; routes: main).
    table: u32,
    priority: Option<u32>,
    dst: [u64; 2],
}

/// One message's test against every selector, handed to each `bpf_loop` callback.
#[repr(C)]
struct Matching {
    asked: Asked,
    netns_ino: u32,
    selectors: u32,
    mask: u64,
}

// int security_netlink_send(struct sock *sk, struct sk_buff *skb) — LSM_HOOK(int, 0,
// netlink_send, …), include/linux/lsm_hook_defs.h (6.1: 257, 6.12: 289). The BPF program gets
// (sk, skb, ret), ret being the verdict of the BPF LSM programs before it.
#[lsm(hook = "netlink_send")]
pub fn lsm_netlink_send(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(2);
    if previous != 0 {
        return previous;
    }
    if super::kern::floor() {
        return 0;
    }
    try_netlink_send(&ctx).unwrap_or(0)
}

#[inline(always)]
fn try_netlink_send(ctx: &LsmContext) -> Option<i32> {
    let state = DENY_STATE.get(0)?;
    let selectors = state.count;
    if selectors == 0 {
        return None;
    }
    let sk: u64 = ctx.arg(0);
    let skb: u64 = ctx.arg(1);
    let protocol = read::<u16>(sk, config_field!(offsets.sock_protocol))?;
    if protocol != sock::NETLINK_ROUTE {
        return None;
    }
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    let tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    // routeguard's own restores.
    if SELF_TGID.get(0).is_some_and(|me| *me == tgid) {
        return None;
    }
    let net = read::<u64>(sk, config_field!(offsets.sock_net))?;
    let netns_ino = read::<u32>(net, config_field!(offsets.net_ns_inum))?;
    let mut walk = Walk {
        data: read::<u64>(skb, config_field!(offsets.skb_data))?,
        len: read::<u32>(skb, config_field!(offsets.skb_len))?,
        pos: 0,
        netns_ino,
        selectors,
        matched: 0,
        unparsed: 0,
        _pad: 0,
    };
    // SAFETY: `message` has the callback signature bpf_loop expects (u32 index, void *ctx) ->
    // long; `walk` lives on this stack for the whole call. bpf_loop: since 5.17
    // (kernel/bpf/bpf_iter.c, 6.1) / kernel/bpf/helpers.c (6.12).
    let walked = unsafe {
        aya_ebpf::helpers::generated::bpf_loop(
            MAX_MESSAGES,
            message as *const () as *mut c_void,
            &mut walk as *mut Walk as *mut c_void,
            0,
        )
    };
    if walked < 0 || (walked as u32 >= MAX_MESSAGES && walk.pos < walk.len) {
        walk.unparsed = 1;
    }
    let mut refused = walk.matched;
    if walk.unparsed != 0 {
        // What the send asks cannot be told: every entry in force here could be at stake.
        // SAFETY: values only read.
        refused |= unsafe {
            DENY_NETNS.get(&netns_ino).copied().unwrap_or(0)
                | DENY_NETNS.get(&0).copied().unwrap_or(0)
        };
    }
    if refused == 0 {
        return None;
    }
    // rtnetlink refuses it on its own (net/core/rtnetlink.c: netlink_net_capable, 6.1: 6086,
    // 6.12: 6691): left to the kernel and to the capture, as any refused request. Unknown
    // (an offset missing): decided here.
    if budget::may_admin(task, net) == Some(false) {
        return None;
    }
    // SAFETY: helper without preconditions.
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: values only read.
    let mut allowed = unsafe { ALLOW_CGROUP.get(&cgroup) }.copied().unwrap_or(0);
    if let Some(exe) = exe_key(task) {
        // SAFETY: as above.
        allowed |= unsafe { ALLOW_EXE.get(&exe) }.copied().unwrap_or(0);
    }
    if refused & !allowed == 0 {
        return None;
    }
    let dry_run = state.dry_run != 0;
    count(counter::DENIED);
    let sock = Sock {
        sk,
        family: sock::AF_NETLINK,
        protocol,
        netns_ino,
        net,
    };
    // Two calls from here, not one inside the other: see `emitted`.
    let written = match record(&sock, walk.data, walk.len, u32::from(dry_run)) {
        Some(0) => Some(()),
        Some(n) => emitted(task, &sock, n as usize),
        None => None,
    };
    if written.is_none() {
        count(counter::DENIAL_LOST);
    }
    Some(if dry_run { 0 } else { -EPERM })
}

/// One message of the send: decodes it if it is a removal and marks the entries it could hit.
/// Returns 1 to stop (the end of the send, or a malformed header, where rtnetlink stops too:
/// `netlink_rcv_skb`, af_netlink.c 6.1: 2505, 6.12: 2543), 0 to go on.
#[inline(never)]
unsafe extern "C" fn message(_index: u32, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer given to it: the caller's `Walk`.
    let walk = unsafe { &mut *(ctx as *mut Walk) };
    let pos = bound(u64::from(walk.pos), POS_MASK) as u32;
    if pos + NLMSG_HDRLEN > walk.len {
        return 1;
    }
    let at = walk.data + u64::from(pos);
    let Some(hdr) = read::<[u16; 4]>(at, 0) else {
        walk.unparsed = 1;
        return 1;
    };
    let msg_len = u32::from(hdr[0]) | (u32::from(hdr[1]) << 16);
    if msg_len < NLMSG_HDRLEN || msg_len > walk.len - pos {
        return 1;
    }
    walk.pos = pos + ((msg_len + 3) & !3);
    let (msg_type, flags) = (hdr[2], hdr[3]);
    if flags & NLM_F_REQUEST == 0 {
        return 0;
    }
    let kind = match msg_type {
        RTM_DELRULE => deny_kind::RULE,
        RTM_DELROUTE => deny_kind::ROUTE,
        RTM_NEWROUTE if flags & NLM_F_REPLACE != 0 => deny_kind::ROUTE,
        _ => return 0,
    };
    match decode(at, msg_len, kind, msg_type == RTM_NEWROUTE) {
        Some(asked) => walk.matched |= matching(asked, walk.netns_ino, walk.selectors),
        None => walk.unparsed = 1,
    }
    0
}

/// The family header and the attributes the selectors look at.
#[inline(always)]
fn decode(at: u64, msg_len: u32, kind: u8, replace: bool) -> Option<Asked> {
    // fib_rule_hdr { family, dst_len, src_len, tos, table, res1, res2, action; flags } and
    // rtmsg { family, dst_len, src_len, tos, table, protocol, scope, type; flags }.
    let fam = read::<[u8; 8]>(at, NLMSG_HDRLEN)?;
    let mut asked = Asked {
        kind,
        family: fam[0],
        replace,
        table: u32::from(fam[4]),
        priority: None,
        dst_len: fam[1],
        dst: [0; 2],
    };
    let end = msg_len;
    let mut off = NLMSG_HDRLEN + FAMILY_HDR;
    let mut i = 0;
    while i < MAX_ATTRS {
        if off + 4 > end {
            return Some(asked);
        }
        let off_b = bound(u64::from(off), POS_MASK);
        let [nla_len, nla_type] = read::<[u16; 2]>(at + off_b, 0)?;
        let nla_type = nla_type & 0x3fff;
        if nla_len < 4 || u32::from(nla_len) > end - off {
            return None;
        }
        let value = at + off_b + 4;
        match nla_type {
            ATTR_PRIORITY if nla_len >= 8 => asked.priority = Some(read::<u32>(value, 0)?),
            ATTR_TABLE if nla_len >= 8 => asked.table = read::<u32>(value, 0)?,
            RTA_DST if kind == deny_kind::ROUTE => {
                let mut bytes = [0u8; 16];
                let n = if asked.family == AF_INET { 4 } else { 16 };
                if usize::from(nla_len) < 4 + n {
                    return None;
                }
                let n = bound(n as u64, 31) as usize;
                if n > 16 {
                    return None;
                }
                // SAFETY: reads kernel memory with fault handling into `bytes[..n]`.
                unsafe { bpf_probe_read_kernel_buf(value as *const u8, &mut bytes[..n]) }.ok()?;
                asked.dst = halves(&bytes);
            }
            _ => {}
        }
        off += (u32::from(nla_len) + 3) & !3;
        i += 1;
    }
    // More attributes than decoded: what follows could change the table.
    None
}

/// The selectors `asked` could match, as a mask (the "could match" rule, docs/prevention.md).
///
/// One `bpf_loop` callback per selector, not a loop here: a loop that accumulates a mask over
/// branching tests multiplies the verifier's states (6.1 gave up after 1M instructions).
#[inline(always)]
fn matching(asked: Asked, netns_ino: u32, selectors: u32) -> u64 {
    let mut m = Matching {
        asked,
        netns_ino,
        selectors,
        mask: 0,
    };
    // SAFETY: `selector` has the callback signature bpf_loop expects; `m` lives on this stack
    // for the whole call.
    let ret = unsafe {
        aya_ebpf::helpers::generated::bpf_loop(
            DENY_MAX,
            selector as *const () as *mut c_void,
            &mut m as *mut Matching as *mut c_void,
            0,
        )
    };
    if ret < 0 {
        // Could not test: every entry.
        return u64::MAX;
    }
    m.mask
}

/// Tests selector `index`; returns 1 past the last valid one.
#[inline(never)]
unsafe extern "C" fn selector(index: u32, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer given to it: the caller's `Matching`.
    let m = unsafe { &mut *(ctx as *mut Matching) };
    if index >= m.selectors || index >= DENY_MAX {
        return 1;
    }
    if let Some(sel) = DENY_SELECTORS.get(index) {
        if could_match(sel, &m.asked, m.netns_ino) {
            m.mask |= 1u64 << (index & 63);
        }
    }
    0
}

#[inline(always)]
fn could_match(sel: &DenySelector, asked: &Asked, netns_ino: u32) -> bool {
    if sel.kind != asked.kind || (sel.netns_ino != 0 && sel.netns_ino != netns_ino) {
        return false;
    }
    if sel.family != 0 && asked.family != 0 && sel.family != asked.family {
        return false;
    }
    if asked.kind == deny_kind::RULE {
        // fib_nl_delrule removes the first rule every set field matches: unset is a wildcard.
        if sel.table != 0 && asked.table != 0 && asked.table != sel.table {
            return false;
        }
        return match asked.priority {
            Some(p) if sel.has_priority != 0 => p >= sel.priority_lo && p <= sel.priority_hi,
            _ => true,
        };
    }
    // Routes: table 0 is main (fib_get_table / fib6_get_table), never a wildcard.
    let table = if asked.table == 0 {
        RT_TABLE_MAIN
    } else {
        asked.table
    };
    if sel.table != 0 && table != sel.table {
        return false;
    }
    if sel.has_priority != 0 {
        // A delete without a metric matches any; a replace without one replaces metric 0 (v4)
        // or 1024 (v6).
        let metric = match (asked.priority, asked.replace) {
            (Some(p), _) => Some(p),
            (None, true) if asked.family == AF_INET => Some(0),
            (None, true) => Some(1024),
            (None, false) => None,
        };
        if metric.is_some_and(|m| m < sel.priority_lo || m > sel.priority_hi) {
            return false;
        }
    }
    if sel.has_dst != 0 {
        // The prefix is exact: the request's lies within the selector's.
        if asked.family != sel.family || asked.dst_len < sel.dst_len {
            return false;
        }
        let want = halves(&sel.dst);
        let (hi, lo) = masks(sel.dst_len);
        if (asked.dst[0] ^ want[0]) & hi != 0 || (asked.dst[1] ^ want[1]) & lo != 0 {
            return false;
        }
    }
    true
}

/// An address as two big-endian halves.
#[inline(always)]
fn halves(bytes: &[u8; 16]) -> [u64; 2] {
    let mut hi = [0u8; 8];
    let mut lo = [0u8; 8];
    hi.copy_from_slice(&bytes[..8]);
    lo.copy_from_slice(&bytes[8..]);
    [u64::from_be_bytes(hi), u64::from_be_bytes(lo)]
}

/// The masks of a prefix of `len` bits over the two halves.
#[inline(always)]
fn masks(len: u8) -> (u64, u64) {
    let len = u32::from(len.min(128));
    let hi = if len == 0 {
        0
    } else if len >= 64 {
        u64::MAX
    } else {
        u64::MAX << (64 - len)
    };
    let lo = if len <= 64 {
        0
    } else if len >= 128 {
        u64::MAX
    } else {
        u64::MAX << (128 - len)
    };
    (hi, lo)
}

/// The current task's executable, as `task::exe_id` reads it.
#[inline(always)]
fn exe_key(task: u64) -> Option<ExeKey> {
    let mm = read::<u64>(task, config_field!(offsets.task_mm))?;
    let file = read::<u64>(mm, config_field!(offsets.mm_exe_file))?;
    let inode = read::<u64>(file, config_field!(offsets.file_inode))?;
    let sb = read::<u64>(inode, config_field!(offsets.inode_sb))?;
    Some(ExeKey {
        dev: read::<u32>(sb, config_field!(offsets.super_block_dev))?,
        _pad: 0,
        ino: read::<u64>(inode, config_field!(offsets.inode_ino))?,
    })
}

/// The refused send copied into the request scratch (`request_flags::DENIED` or
/// `WOULD_DENY`), for [`emitted`] to write: userspace makes one event per removal message in
/// it. Returns the bytes copied, 0 when the sender's budget suppressed it (counted there),
/// `None` when it could not be copied. Denials are budgeted like requests; the budget never
/// changes the verdict.
///
/// A subprogram of its own (not inlined): the BPF stack is 512 bytes for a whole call chain,
/// and the record's work inlined made the entry point's frame 352 bytes, which with the two
/// `bpf_loop` callbacks' frames exceeded it on 6.1 ("combined stack size … Too large").
#[inline(never)]
fn record(sock: &Sock, data: u64, len: u32, dry_run: u32) -> Option<u32> {
    let dry_run = dry_run != 0;
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    let rec = REQUEST_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch owned by this program invocation.
    let rec: &mut RequestRecord = unsafe { &mut *rec };
    // Not IN_KERNEL: that names the kernel-function path's request hooks; a denial is heard
    // on either path, and its events say which path runs.
    rec.head.flags = if dry_run {
        request_flags::WOULD_DENY
    } else {
        request_flags::DENIED
    };
    let mut n = len as usize;
    if n > PAYLOAD_HALF {
        n = PAYLOAD_HALF;
        rec.head.flags |= request_flags::TRUNCATED;
        count(counter::TRUNCATED);
    }
    let n = bound(n as u64, (PAYLOAD_HALF * 2 - 1) as u64) as usize;
    if n == 0 || n > PAYLOAD_HALF {
        return None;
    }
    // SAFETY: reads kernel memory with fault handling into a buffer of at least `n` bytes.
    unsafe { bpf_probe_read_kernel_buf(data as *const u8, &mut rec.payload[..n]) }.ok()?;
    Some(if budget::admit(task, sock, n as u64) {
        n as u32
    } else {
        0
    })
}

/// Writes the request [`record`] left in the scratch ([`send::emit`]), called from the entry
/// point beside `record` rather than from inside it.
///
/// On 6.1 the verifier sums the frames of the deepest call chain (512 bytes at most): with
/// `emit` inside `record`, the entry point (192), `record` and `send::copy` (64) made 544
/// ("combined stack size of 4 calls is 544. Too large"; 6.12 loaded it). Now 192 + 256 + 64.
#[inline(never)]
fn emitted(task: u64, sock: &Sock, n: usize) -> Option<()> {
    let rec = REQUEST_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch owned by this program invocation, filled by `record`.
    let rec: &mut RequestRecord = unsafe { &mut *rec };
    // `bound` is a mask: the next power of two less one, as in `record`.
    let n = bound(n as u64, (PAYLOAD_HALF * 2 - 1) as u64) as usize;
    if n > PAYLOAD_HALF {
        return None;
    }
    send::emit(rec, task, sock, super::kfunc::requests::via(), n)
}
