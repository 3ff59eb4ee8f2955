//! routeguard: names the process behind every route, rule and nexthop removal.
//!
//! Data flows one way: [`capture`] (eBPF programs and the ring buffer) → [`decode`] (wire records
//! and netlink/ioctl payloads) → [`attribution`] (process, cgroup, netns) → [`correlate`]
//! (requests joined with the kernel's replies) → [`event`] → [`sink`] (terminal, JSON).
//! [`pipeline`] runs capture and correlation for the commands in [`cli`]. Apart from that flow,
//! [`restore`] consumes events and puts protected objects back; [`hints`] names known culprits;
//! [`files`] opens what routeguard writes (private, never through a symlink). [`netlink`] is the
//! one room that speaks rtnetlink (walkers, constants, sockets inside a namespace).

pub mod attribution;
pub mod capture;
pub mod cli;
pub mod clock;
pub mod correlate;
pub mod daemon;
pub mod decode;
pub mod doctor;
pub mod event;
pub mod files;
pub mod hints;
pub mod kernel;
pub mod mirror;
pub mod netlink;
pub mod pipeline;
pub mod prevent;
pub mod report;
pub mod restore;
pub mod sink;
pub mod store;
