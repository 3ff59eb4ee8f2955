//! The one room that speaks rtnetlink; decode, the mirror, restores and doctor ask it.
//!
//! - [`uapi`]: the kernel's numbers (RTM_*, NLM_F_*, RTA_*, FRA_*, …) and message type names.
//! - [`messages`] / [`Header`]: the `nlmsghdr` walker, for hostile bytes and kernel replies
//!   alike.
//! - [`attrs`]: the attribute walker.
//! - [`RouteSocket`]: NETLINK_ROUTE sockets, opened here or inside another namespace, with
//!   dumps, acknowledged requests and overflow-aware receives.
//! - [`netns`]: the namespaces this process can reach, running code inside one, and whether
//!   one is still held.
//!
//! The walkers allocate nothing: the correlating thread runs every captured request and
//! notification through them (~100k messages a second in a burst).

mod attr;
mod message;
pub mod netns;
mod socket;
pub mod uapi;

#[cfg(test)]
pub(crate) use attr::encode as encode_attr;
pub use attr::{attrs, Attr, AttrError, Attrs};
pub use message::{messages, removal_requests, request, Header, Message, MessageError, Messages};
pub use netns::NetnsError;
pub use socket::{Options, RouteSocket, SocketError, RECV_BUF};
pub use uapi::message_name;
