//! Splits one send into its netlink messages and decodes each.

use super::{link, route, rule, BodyError, DecodeError, Decoded, Removal};
use crate::{
    event::Cause,
    netlink::{
        self, message_name,
        uapi::{
            NLMSG_MIN_TYPE, NLM_F_REPLACE, NLM_F_REQUEST, RTM_DELADDR, RTM_DELLINK, RTM_DELNEXTHOP,
            RTM_DELROUTE, RTM_DELRULE, RTM_NEWLINK, RTM_NEWROUTE, RTM_SETLINK,
        },
        Header, MessageError,
    },
};

/// Most entries [`decode_netlink`] returns. A 16 KiB capture holds at most 1024 messages; the
/// cap bounds the output for any other caller.
pub const MAX_MESSAGES: usize = 4096;

impl From<MessageError> for DecodeError {
    fn from(err: MessageError) -> Self {
        match err {
            MessageError::Truncated { offset, remaining } => {
                DecodeError::TruncatedHeader { offset, remaining }
            }
            MessageError::BadLength {
                offset,
                msg_type,
                nlmsg_len,
                remaining,
            } => DecodeError::BadLength {
                offset,
                msg_type,
                nlmsg_len,
                remaining,
            },
        }
    }
}

/// Every netlink message in `payload` (several may be batched in one send; iproute2's `ip route
/// flush` batches ~30 RTM_DELROUTE without NLM_F_ACK in one send).
///
/// Walks `nlmsghdr`s by `nlmsg_len` with `NLMSG_ALIGN`, as `netlink_rcv_skb`
/// (net/netlink/af_netlink.c) does ([`netlink::messages`]). Stops at the first malformed
/// header, reporting an `Err` for it (the kernel stops there too). Returns at most
/// [`MAX_MESSAGES`] entries; when more messages remain, the last entry is
/// [`DecodeError::TooManyMessages`].
pub fn decode_netlink(payload: &[u8]) -> Vec<Result<Decoded, DecodeError>> {
    let mut decoded = Vec::new();
    for message in netlink::messages(payload) {
        if decoded.len() == MAX_MESSAGES - 1 {
            let offset = match &message {
                Ok(m) => m.offset,
                Err(e) => e.offset(),
            };
            decoded.push(Err(DecodeError::TooManyMessages {
                offset,
                limit: MAX_MESSAGES,
            }));
            break;
        }
        decoded.push(match message {
            Ok(m) => decode_message(m.offset, m.header, m.body),
            Err(e) => Err(e.into()),
        });
    }
    decoded
}

/// One message whose header has been checked; `body` is what follows the header.
fn decode_message(offset: usize, header: Header, body: &[u8]) -> Result<Decoded, DecodeError> {
    let len = header.len as usize;
    let op = message_name(header.msg_type).ok_or(DecodeError::UnknownType {
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
    if header.flags & NLM_F_REQUEST == 0 || header.msg_type < NLMSG_MIN_TYPE {
        return Ok(decoded(None));
    }
    let replace = header.flags & NLM_F_REPLACE != 0;
    let removal: Result<Option<Removal>, BodyError> = match header.msg_type {
        RTM_DELROUTE => route::route(body, Cause::Request).map(Some),
        RTM_NEWROUTE if replace => route::route(body, Cause::Replace).map(Some),
        RTM_DELRULE => rule::rule(body, Cause::Request).map(Some),
        // Not RTM_NEWRULE with NLM_F_REPLACE: fib_nl_newrule ignores the flag (6.1, 6.12, and
        // measured on 6.18: the new rule is added beside the old), so nothing is removed.
        RTM_DELNEXTHOP => route::nexthop(body).map(Some),
        RTM_DELADDR => link::address(body).map(Some),
        RTM_DELLINK => link::removed(body).map(Some),
        RTM_NEWLINK | RTM_SETLINK => link::set(body),
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
