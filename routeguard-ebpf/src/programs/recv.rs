//! The kernel's replies: the window in which a process's replies are looked at, and the record
//! of one. The replies themselves are read in the kernel, from the skb copied to the receiver
//! (`ack.rs`): never from the receiver's memory at `sys_exit`, where another of its threads may
//! have repointed the `msghdr` at a forged ack (issue 17 item 3).

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns};
use routeguard_common::{counter, kind, AckRecord, RecordHeader, WIRE_VERSION};

use super::{
    maps::{count, AWAITING_REPLY, EVENTS},
    send::wake_flags,
};

/// A process's receives are inspected this long after its last captured request.
pub const REPLY_WINDOW_NS: u64 = 10_000_000_000;

/// sys_exit of a receive: forgets a process whose window has passed (its replies were taken, or
/// not, by `ack.rs` while it received). The arguments are those of the receive.
#[inline(always)]
pub fn exit(_fd: i64, _ptr: u64, _len: u64, _recv: u32, ret: i64) -> Option<()> {
    if ret <= 0 {
        return None;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let since = AWAITING_REPLY.get_ptr(tgid)?;
    // SAFETY: helper without preconditions; the pointer comes from a successful lookup.
    let (now, since) = unsafe { (bpf_ktime_get_ns(), *since) };
    if now.saturating_sub(since) > REPLY_WINDOW_NS {
        let _ = AWAITING_REPLY.remove(tgid);
    }
    Some(())
}

#[inline(always)]
pub fn report(sk: u64, pid_tgid: u64, seq: u32, error: i32, msg_type: u16) {
    let rec = AckRecord {
        header: RecordHeader {
            kind: kind::ACK,
            version: WIRE_VERSION,
            len: core::mem::size_of::<AckRecord>() as u32,
        },
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        sock: sk,
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        seq,
        error,
        msg_type,
        _pad: [0; 6],
    };
    if EVENTS
        .output::<AckRecord>(&rec, wake_flags(size_of::<AckRecord>() as u64))
        .is_err()
    {
        count(counter::ACK_LOST);
    }
}
