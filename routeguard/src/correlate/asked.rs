//! What a request record asks for: each removal in it (several netlink messages may be batched
//! in one send), as a request waiting for the kernel's answer. Both capture paths read requests
//! the same way; they differ in what answers them.

use routeguard_common::{syscall as id, IoctlPayload, RequestHead};

use super::{waiting, Core, Waiting};
use crate::{
    decode::{self, Decoded},
    event::{Op, Request, Syscall},
    netlink::uapi::NLM_F_ACK,
};

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
