//! `struct nlmsghdr`: reading one, walking the messages of a buffer, writing a request.
//!
//! One walker serves the hostile bytes a process sent (decode: it reports where the walk
//! stopped) and the kernel's replies and notifications (sockets: they stop at the first bad
//! header). It walks as `netlink_rcv_skb` (net/netlink/af_netlink.c) does: by `nlmsg_len`,
//! aligned to 4 (`NLMSG_ALIGN`), stopping at the first header that is cut short or whose length
//! is shorter than a header or longer than what is left.

use super::uapi::{
    NLMSG_HDRLEN, NLM_F_REPLACE, NLM_F_REQUEST, RTM_DELADDR, RTM_DELLINK, RTM_DELNEXTHOP,
    RTM_DELROUTE, RTM_DELRULE, RTM_NEWLINK, RTM_NEWROUTE, RTM_SETLINK,
};

/// A `struct nlmsghdr`, in host byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// `nlmsg_len`: the whole message, header included.
    pub len: u32,
    pub msg_type: u16,
    pub flags: u16,
    pub seq: u32,
    /// `nlmsg_pid`: the sender's port id (0 for the kernel's own messages).
    pub port: u32,
}

impl Header {
    /// The header at the start of `bytes`; `None` when fewer than [`NLMSG_HDRLEN`] bytes.
    #[inline]
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let h: &[u8; NLMSG_HDRLEN] = bytes.get(..NLMSG_HDRLEN)?.try_into().ok()?;
        let u32_at = |at: usize| u32::from_ne_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        Some(Self {
            len: u32_at(0),
            msg_type: u16::from_ne_bytes([h[4], h[5]]),
            flags: u16::from_ne_bytes([h[6], h[7]]),
            seq: u32_at(8),
            port: u32_at(12),
        })
    }
}

/// A request of `msg_type` with `flags` and sequence number `seq`, port id 0 (the kernel fills
/// in the sender's), followed by `body`.
pub fn request(msg_type: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + body.len();
    let mut msg = Vec::with_capacity(len);
    // A request is a few hundred bytes at most (a kernel description sent back).
    msg.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
    msg.extend_from_slice(&msg_type.to_ne_bytes());
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(body);
    msg
}

/// The positive errno of an `NLMSG_ERROR` body (`struct nlmsgerr`: a negative errno, then the
/// request's header): 0 for an ack. `None` when the body is shorter than the errno.
pub fn error_code(body: &[u8]) -> Option<i32> {
    let b = body.get(..4)?;
    Some(-i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// One message of a walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// Where its header starts in the walked buffer.
    pub offset: usize,
    pub header: Header,
    /// What follows the header, up to `nlmsg_len`.
    pub body: &'a [u8],
}

/// Why a walk stopped before the end of its buffer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Fewer bytes are left than a header needs.
    #[error("netlink header truncated at offset {offset}: {remaining} bytes left, a header needs {NLMSG_HDRLEN}")]
    Truncated { offset: usize, remaining: usize },
    /// `nlmsg_len` is shorter than the header or longer than what is left.
    #[error(
        "netlink message at offset {offset} (type {msg_type}) has nlmsg_len {nlmsg_len} but \
         {remaining} bytes are left (a message needs {NLMSG_HDRLEN}..={remaining})"
    )]
    BadLength {
        offset: usize,
        msg_type: u16,
        nlmsg_len: u32,
        remaining: usize,
    },
}

impl MessageError {
    /// Where the bad header starts.
    pub fn offset(&self) -> usize {
        match self {
            Self::Truncated { offset, .. } | Self::BadLength { offset, .. } => *offset,
        }
    }
}

/// The messages of `buf`, in order. After an `Err` (a bad header; see the module comment) the
/// walk ends; callers that trust the sender may stop there silently with
/// `.map_while(Result::ok)`.
pub fn messages(buf: &[u8]) -> Messages<'_> {
    Messages {
        buf,
        offset: 0,
        done: false,
    }
}

/// How many of `buf`'s messages are requests the capture copies a send for: deletes, replaces
/// and link changes (each a removal, or at most one: a link change that raises a link is none).
/// A header walk only, cheap enough for the thread that drains the ring.
pub fn removal_requests(buf: &[u8]) -> u64 {
    messages(buf)
        .map_while(Result::ok)
        .filter(|m| {
            let Header {
                msg_type, flags, ..
            } = m.header;
            flags & NLM_F_REQUEST != 0
                && match msg_type {
                    RTM_DELLINK | RTM_DELADDR | RTM_DELROUTE | RTM_DELRULE | RTM_DELNEXTHOP
                    | RTM_NEWLINK | RTM_SETLINK => true,
                    // A rule "replace" only adds (fib_nl_newrule ignores the flag).
                    RTM_NEWROUTE => flags & NLM_F_REPLACE != 0,
                    _ => false,
                }
        })
        .count() as u64
}

/// See [`messages`].
pub struct Messages<'a> {
    buf: &'a [u8],
    offset: usize,
    done: bool,
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, MessageError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let offset = self.offset;
        let rest = self
            .buf
            .get(offset..)
            .filter(|r| !r.is_empty() && !self.done)?;
        let Some(header) = Header::parse(rest) else {
            self.done = true;
            return Some(Err(MessageError::Truncated {
                offset,
                remaining: rest.len(),
            }));
        };
        let len = header.len as usize;
        if !(NLMSG_HDRLEN..=rest.len()).contains(&len) {
            self.done = true;
            return Some(Err(MessageError::BadLength {
                offset,
                msg_type: header.msg_type,
                nlmsg_len: header.len,
                remaining: rest.len(),
            }));
        }
        // NLMSG_ALIGN; `len` is at most what is left, so this cannot overflow. Past the end,
        // the next call finds nothing.
        self.offset = offset + len.next_multiple_of(4);
        Some(Ok(Message {
            offset,
            header,
            body: &rest[NLMSG_HDRLEN..len],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_removal_requests_of_a_batch() {
        let aligned = |mut m: Vec<u8>| {
            m.resize(m.len().next_multiple_of(4), 0);
            m
        };
        let mut flush = Vec::new();
        // What `ip route flush` sends: deletes back to back, no ack asked.
        for seq in 0..300 {
            flush.extend(aligned(request(RTM_DELROUTE, NLM_F_REQUEST, seq, &[0; 28])));
        }
        assert_eq!(removal_requests(&flush), 300);
        let mut mixed = Vec::new();
        mixed.extend(aligned(request(RTM_DELRULE, NLM_F_REQUEST, 1, &[0; 12])));
        mixed.extend(aligned(request(RTM_NEWROUTE, NLM_F_REQUEST, 2, &[0; 12])));
        mixed.extend(aligned(request(
            RTM_NEWROUTE,
            NLM_F_REQUEST | NLM_F_REPLACE,
            3,
            &[0; 12],
        )));
        // Not a request (the kernel ignores it), then a header cut short: the walk ends.
        mixed.extend(aligned(request(RTM_DELROUTE, 0, 4, &[0; 12])));
        mixed.extend_from_slice(&[0; 7]);
        assert_eq!(removal_requests(&mixed), 2);
        assert_eq!(removal_requests(&[]), 0);
    }

    #[test]
    fn walks_aligned_messages_and_stops_at_a_bad_header() {
        let mut buf = request(24, 1, 7, &[1, 2, 3]);
        buf.resize(buf.len().next_multiple_of(4), 0);
        buf.extend(request(25, 5, 8, &[]));
        let first = buf.len();
        buf.extend_from_slice(&[0; 20]);
        let all: Vec<_> = messages(&buf).collect();
        assert_eq!(all.len(), 3);
        let m = all[0].as_ref().unwrap();
        assert_eq!(
            (m.offset, m.header.msg_type, m.header.seq, m.body),
            (0, 24, 7, &[1, 2, 3][..])
        );
        let m = all[1].as_ref().unwrap();
        assert_eq!((m.offset, m.header.flags, m.body.len()), (20, 5, 0));
        assert_eq!(
            all[2],
            Err(MessageError::BadLength {
                offset: first,
                msg_type: 0,
                nlmsg_len: 0,
                remaining: 20
            })
        );
        assert_eq!(
            messages(&buf[..first + 3]).last(),
            Some(Err(MessageError::Truncated {
                offset: first,
                remaining: 3
            }))
        );
        assert_eq!(messages(&buf[..first]).count(), 2);
        // The last message's padding may be missing.
        assert_eq!(messages(&buf[..19]).count(), 1);
    }

    #[test]
    fn error_codes() {
        assert_eq!(error_code(&(-17i32).to_ne_bytes()), Some(17));
        assert_eq!(error_code(&0i32.to_ne_bytes()), Some(0));
        assert_eq!(error_code(&[1, 2]), None);
    }
}
