//! What a request record asks for: each removal in it (several netlink messages may be batched
//! in one send), as a request waiting for the kernel's answer. Both capture paths read requests
//! the same way; they differ in what answers them.

use routeguard_common::{request_flags, syscall as id, IoctlPayload, RequestHead};

use super::{waiting, Core, Waiting};
use crate::{
    decode::{self, Decoded},
    event::{Capture, Evidence, Op, Outcome, Request, Syscall},
    netlink::uapi::NLM_F_ACK,
};

/// The errno a refused send returns (`-EPERM` from the LSM program).
const EPERM: i32 = 1;

impl Core {
    /// The removals `payload` asks for, each waiting for its answer; what does not decode is
    /// counted.
    pub(super) fn asked(&mut self, head: &RequestHead, payload: &[u8]) -> Vec<Waiting> {
        self.saw(head.ts_ns);
        if head.syscall == id::IOCTL {
            return self.ioctl_asked(head, payload).into_iter().collect();
        }
        let mut asked = Vec::new();
        for item in decode::decode_netlink(payload) {
            match item {
                Ok(Decoded {
                    removal: Some(removal),
                    header: Some(hdr),
                    op,
                }) => {
                    let request = Request {
                        syscall: super::syscall_of(head.syscall),
                        op: Op::named(op),
                        seq: Some(hdr.seq),
                        nlmsg_flags: Some(hdr.flags),
                        ack_requested: hdr.flags & NLM_F_ACK != 0,
                        port_id: (head.portid != 0).then_some(head.portid),
                    };
                    let event = self.event(head, removal, request);
                    asked.push(waiting(event, head));
                }
                Ok(_) => {}
                Err(err) => {
                    self.problems.undecodable += 1;
                    tracing::debug!(%err, pid = head.task.pid, "undecodable netlink message");
                }
            }
        }
        asked
    }

    /// A send the LSM program refused (or would have, in a dry run): each removal in it goes
    /// out now as `denied` (errno EPERM) or `would-deny`, with the actor the request names.
    /// Returns the sequence numbers of the refused messages (none in a dry run); `None` when
    /// the record is no denial.
    pub(super) fn denied(
        &mut self,
        head: &RequestHead,
        payload: &[u8],
        path: Capture,
    ) -> Option<Vec<u32>> {
        let outcome = if head.flags & request_flags::DENIED != 0 {
            Outcome::Denied
        } else if head.flags & request_flags::WOULD_DENY != 0 {
            Outcome::WouldDeny
        } else {
            return None;
        };
        let mut seqs = Vec::new();
        for mut w in self.asked(head, payload) {
            // A dry run's send goes on to rtnetlink: its requests stay to be answered.
            if outcome == Outcome::Denied {
                seqs.extend(w.seq());
            }
            w.event.outcome = outcome;
            w.event.capture = path;
            if outcome == Outcome::Denied {
                w.event.errno = Some(EPERM);
                w.event.error = crate::event::errno::name(EPERM).map(str::to_string);
            }
            w.evidence = Evidence::Lsm;
            self.release(w.observed());
        }
        Some(seqs)
    }

    fn ioctl_asked(&mut self, head: &RequestHead, payload: &[u8]) -> Option<Waiting> {
        if payload.len() < size_of::<IoctlPayload>() {
            self.problems.undecodable += 1;
            return None;
        }
        // SAFETY: length checked above; IoctlPayload is a repr(C) wire type valid for any bits.
        let p: IoctlPayload = unsafe { std::ptr::read_unaligned(payload.as_ptr().cast()) };
        match decode::decode_ioctl(head.sock_family, &p) {
            Ok(Decoded {
                removal: Some(removal),
                op,
                ..
            }) => {
                let request = Request {
                    syscall: Syscall::Ioctl,
                    op: Op::named(op),
                    seq: None,
                    nlmsg_flags: None,
                    ack_requested: true,
                    port_id: None,
                };
                let event = self.event(head, removal, request);
                Some(waiting(event, head))
            }
            Ok(_) => None,
            Err(err) => {
                self.problems.undecodable += 1;
                tracing::debug!(%err, pid = head.task.pid, "undecodable ioctl");
                None
            }
        }
    }
}
