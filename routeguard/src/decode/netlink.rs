//! Splits one send into its netlink messages and decodes each.

use netlink_packet_core::NetlinkBuffer;

use super::{link, names, route, rule, DecodeError, Decoded, MessageHeader, Removal};
use crate::event::Cause;

/// Most entries [`decode_netlink`] returns. A 16 KiB capture holds at most 1024 messages; the
/// cap bounds the output for any other caller.
pub const MAX_MESSAGES: usize = 4096;

/// `NLMSG_HDRLEN`: `sizeof(struct nlmsghdr)`.
const NLMSG_HDRLEN: usize = 16;

/// Every netlink message in `payload` (several may be batched in one send; iproute2's `ip route
/// flush` batches ~30 RTM_DELROUTE without NLM_F_ACK in one send).
///
/// Walks `nlmsghdr`s by `nlmsg_len` with `NLMSG_ALIGN`, as `netlink_rcv_skb`
/// (net/netlink/af_netlink.c) does. Stops at the first malformed header, reporting an `Err` for
/// it (the kernel stops there too). Returns at most [`MAX_MESSAGES`] entries; when more
/// messages remain, the last entry is [`DecodeError::TooManyMessages`].
pub fn decode_netlink(payload: &[u8]) -> Vec<Result<Decoded, DecodeError>> {
    let mut decoded = Vec::new();
    let mut offset = 0;
    while let Some(rest) = payload.get(offset..).filter(|rest| !rest.is_empty()) {
        if decoded.len() == MAX_MESSAGES - 1 {
            decoded.push(Err(DecodeError::TooManyMessages {
                offset,
                limit: MAX_MESSAGES,
            }));
            break;
        }
        if rest.len() < NLMSG_HDRLEN {
            decoded.push(Err(DecodeError::TruncatedHeader {
                offset,
                remaining: rest.len(),
            }));
            break;
        }
        let unchecked = NetlinkBuffer::new(rest);
        let nlmsg_len = unchecked.length();
        let len = nlmsg_len as usize;
        let bad_length = || DecodeError::BadLength {
            offset,
            msg_type: unchecked.message_type(),
            nlmsg_len,
            remaining: rest.len(),
        };
        let Some(message) = rest
            .get(..len)
            .filter(|_| len >= NLMSG_HDRLEN)
            .and_then(|bytes| NetlinkBuffer::new_checked(bytes).ok())
        else {
            decoded.push(Err(bad_length()));
            break;
        };
        let header = MessageHeader {
            msg_type: message.message_type(),
            flags: message.flags(),
            seq: message.sequence_number(),
            port: message.port_number(),
        };
        decoded.push(decode_message(offset, len, header, message.payload()));
        // NLMSG_ALIGN; `len` is at most `rest.len()`, so this cannot overflow.
        offset += len.next_multiple_of(4);
    }
    decoded
}

/// One message whose header has been checked; `body` is what follows the header.
fn decode_message(
    offset: usize,
    len: usize,
    header: MessageHeader,
    body: &[u8],
) -> Result<Decoded, DecodeError> {
    let op = names::message_type(header.msg_type).ok_or(DecodeError::UnknownType {
        offset,
        msg_type: header.msg_type,
        len,
    })?;
    let decoded = |removal| Decoded {
        header: Some(header),
        op,
        removal,
    };
    // `netlink_rcv_skb` acts only on requests: `if (!(nlh->nlmsg_flags & NLM_F_REQUEST)) goto
    // ack;`, and skips control messages: `if (nlh->nlmsg_type < NLMSG_MIN_TYPE) goto ack;`.
    if header.flags & names::NLM_F_REQUEST == 0 || header.msg_type < names::NLMSG_MIN_TYPE {
        return Ok(decoded(None));
    }
    let replace = header.flags & names::NLM_F_REPLACE != 0;
    let removal: Result<Option<Removal>, String> = match header.msg_type {
        names::RTM_DELROUTE => route::route(body, Cause::Request).map(Some),
        names::RTM_NEWROUTE if replace => route::route(body, Cause::Replace).map(Some),
        names::RTM_DELRULE => rule::rule(body, Cause::Request).map(Some),
        names::RTM_NEWRULE if replace => rule::rule(body, Cause::Replace).map(Some),
        names::RTM_DELNEXTHOP => route::nexthop(body).map(Some),
        names::RTM_DELADDR => link::address(body).map(Some),
        names::RTM_DELLINK => link::removed(body).map(Some),
        names::RTM_NEWLINK | names::RTM_SETLINK => link::set(body),
        _ => Ok(None),
    };
    removal
        .map(decoded)
        .map_err(|reason| DecodeError::Malformed {
            op,
            offset,
            len,
            reason,
        })
}
