//! The kernel's notifications of the deletions a request made (`Notify` records, copied by the
//! socket filter on the mirror's listeners inside the requester's `sendmsg`): what they say, and
//! the event one becomes when no captured request claims it.

use super::Core;
use crate::{
    decode::{self, record::Notify},
    event::{
        Capture, Cause, Event, Evidence, Family, KernelBody, Kind, Object, Observed, Op, Outcome,
        Request, Syscall,
    },
    netlink::{
        uapi::{NLMSG_HDRLEN, RTM_DELROUTE, RTM_DELRULE},
        Header,
    },
};

/// One notification, decoded.
pub(super) struct Notified {
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    /// The requesting thread's namespace (the request's socket may be in another).
    pub netns: u32,
    pub seq: u32,
    /// `nlmsg_pid`: the requester's port id.
    pub port: u32,
    pub family: Option<Family>,
    /// The route or rule the kernel removed, as it describes it.
    pub object: Object,
    /// The kernel's bytes for it; `None` when the copy was cut short (a restore must not re-add
    /// a partial description).
    pub kernel: Option<KernelBody>,
}

impl Notified {
    /// `RTM_DELROUTE` or `RTM_DELRULE`, decoded; `None` (and counted) for anything else.
    pub fn parse(n: &Notify<'_>, core: &mut Core) -> Option<Self> {
        // The copy may be cut short of `nlmsg_len`: what it holds still decodes.
        let header = Header::parse(n.msg)?;
        let len = header.len as usize;
        let body = n.msg.get(NLMSG_HDRLEN..len.min(n.msg.len()))?;
        let whole = n.full_len as usize <= n.msg.len() && len <= n.msg.len();
        let decoded = match header.msg_type {
            RTM_DELROUTE => decode::route_body(body).map(|(f, r)| (f, Object::Route(r))),
            RTM_DELRULE => decode::rule_body(body).map(|(f, r)| (f, Object::Rule(r))),
            other => {
                core.problems.undecodable += 1;
                tracing::debug!(
                    msg_type = other,
                    pid = n.pid,
                    "a notification that is not a deletion"
                );
                return None;
            }
        };
        let (family, object) = match decoded {
            Ok(d) => d,
            Err(reason) => {
                core.problems.undecodable += 1;
                tracing::debug!(%reason, pid = n.pid, "undecodable deletion notification");
                return None;
            }
        };
        Some(Self {
            ts_ns: n.ts_ns,
            pid: n.pid,
            tid: n.tid,
            netns: n.netns_ino,
            seq: header.seq,
            port: header.port,
            family,
            object,
            kernel: whole.then(|| KernelBody::new(body)),
        })
    }

    /// The op of the request that asks for this deletion.
    pub fn op(&self) -> Op {
        match self.object.kind() {
            Kind::Rule => Op::RtmDelRule,
            _ => Op::RtmDelRoute,
        }
    }

    /// A request this notification answers: a delete of the same kind (a route delete of `ip
    /// route flush` too).
    pub fn answers(&self, ev: &Event) -> bool {
        ev.object.kind() == self.object.kind()
            && matches!(ev.cause, Cause::Request | Cause::Flush)
            && ev.request.as_ref().is_some_and(|r| r.op == self.op())
    }

    /// The request's event takes the kernel's view of what it removed.
    pub fn settle(self, ev: &mut Event) -> Option<KernelBody> {
        ev.object = self.object;
        if self.family.is_some() {
            ev.family = self.family;
        }
        ev.outcome = Outcome::Removed;
        ev.errno = None;
        ev.error = None;
        self.kernel
    }

    /// The event of a notification no captured request claims: its request record was lost, or
    /// the sender used a way the capture does not hook (io_uring, a compat syscall).
    /// The actor is the requesting thread the record names; the request is what the
    /// notification echoes of it.
    pub fn alone(self, core: &mut Core, capture: Capture) -> Observed {
        let netns = core.netns.lookup(self.netns);
        let mut ev = Event::removal(
            core.clock.wall(self.ts_ns),
            Object::unnamed(self.object.kind()),
            self.family,
            Cause::Request,
            Outcome::Removed,
            capture,
            netns,
        );
        // The thread the kernel made the notification in is the sender (rtnetlink acts inside
        // its send, io_uring's workers included: they are threads of the submitting process).
        // pid 0: BTF lacked the task's offsets, and no one is named rather than a wrong process;
        // the port id still says which socket sent it.
        ev.actor = (self.pid != 0).then(|| core.actor_of(self.pid, self.tid));
        ev.request = Some(Request {
            syscall: Syscall::Netlink,
            op: self.op(),
            seq: Some(self.seq),
            nlmsg_flags: None,
            ack_requested: false,
            port_id: Some(self.port),
        });
        // `ip route flush` is told by its sender, as for a captured request.
        super::flush::reclassify(&mut ev);
        let kernel = self.settle(&mut ev);
        Observed {
            event: ev,
            kernel,
            evidence: Evidence::Notification,
        }
    }
}
