//! Which removal causes each capture path sees, and whom it names as the actor.

use serde::Serialize;

use crate::capture::select::CapturePath;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Seen {
    Yes,
    No,
}

/// One row of the coverage table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// The event's `cause`.
    pub cause: &'static str,
    pub seen: Seen,
    /// How, and who the actor is.
    pub how: &'static str,
}

const fn row(cause: &'static str, seen: Seen, how: &'static str) -> Coverage {
    Coverage { cause, seen, how }
}

const SYSCALL: &[Coverage] = &[
    row(
        "request",
        Seen::Yes,
        "the RTM_DEL*/SIOCDELRT request (sendmsg, sendto, sendmmsg, write, writev, ioctl) and the kernel's ack; actor: the sender",
    ),
    row(
        "request",
        Seen::Yes,
        "sent with io_uring or a 32-bit syscall: no request is hooked; in a namespace routeguard listens in, the kernel's deletion notification is the event (syscall `netlink`, no ack, protected objects restored); actor: the thread rtnetlink made it in (io_uring's workers are threads of the sender), with the sender socket's port id and seq; in a namespace nobody named (`unshare -n`): not seen",
    ),
    row(
        "replace",
        Seen::Yes,
        "RTM_NEWROUTE with NLM_F_REPLACE, the old route from the mirror; actor: the sender (RTM_NEWRULE ignores the flag: it removes nothing)",
    ),
    row(
        "link-down",
        Seen::Yes,
        "the request, then each route the mirror saw vanish; actor: who took the link down",
    ),
    row(
        "address-removed",
        Seen::Yes,
        "the request, then each route the mirror saw vanish; actor: who removed it",
    ),
    row(
        "link-removed",
        Seen::Yes,
        "the request, then each route the mirror saw vanish; actor: who removed it",
    ),
    row(
        "flush",
        Seen::Yes,
        "each RTM_DELROUTE of `ip route flush`; actor: ip",
    ),
    row(
        "expired",
        Seen::Yes,
        "the mirror hears the kernel delete a route past its lifetime (IPv6); actor: none",
    ),
    row(
        "netns-exit",
        Seen::Yes,
        "the mirror's last state of a /run/netns namespace nothing holds any more; actor: none",
    ),
];

const KERNEL_FUNCTION: &[Coverage] = &[
    row(
        "request",
        Seen::Yes,
        "fib_notify_alias_delete/fib6_del/fib_nl_delrule/remove_nexthop, the request from rtnetlink_rcv_msg/sock_ioctl; actor: the calling process",
    ),
    row(
        "replace",
        Seen::Yes,
        "by the request hook on rtnetlink_rcv_msg, the old route from the mirror; actor: the sender",
    ),
    row(
        "link-down",
        Seen::Yes,
        "one event per route straight from the kernel; actor: the process that took it down",
    ),
    row(
        "address-removed",
        Seen::Yes,
        "one event per route straight from the kernel; actor: the process that removed it",
    ),
    row(
        "link-removed",
        Seen::Yes,
        "one event per route straight from the kernel; actor: the process that removed it",
    ),
    row(
        "expired",
        Seen::Yes,
        "fib6_del under the IPv6 garbage collector; actor: null",
    ),
    row(
        "netns-exit",
        Seen::Yes,
        "removals while the kernel dismantles a namespace; actor: null",
    ),
];

pub fn table(path: CapturePath) -> Vec<Coverage> {
    match path {
        CapturePath::Syscall => SYSCALL,
        CapturePath::KernelFunction => KERNEL_FUNCTION,
    }
    .to_vec()
}

#[cfg(test)]
mod tests {
    use super::{table, Seen};
    use crate::capture::select::CapturePath;

    #[test]
    fn the_syscall_path_names_writev_and_what_io_uring_senders_get() {
        let rows = table(CapturePath::Syscall);
        let requests: Vec<_> = rows.iter().filter(|r| r.cause == "request").collect();
        assert_eq!(requests.len(), 2, "{requests:?}");
        assert!(requests[0].how.contains("writev"), "{}", requests[0].how);
        let io_uring = requests[1];
        assert_eq!(io_uring.seen, Seen::Yes);
        for words in ["io_uring", "32-bit", "notification", "port id", "no ack"] {
            assert!(io_uring.how.contains(words), "{words}: {}", io_uring.how);
        }
    }
}
