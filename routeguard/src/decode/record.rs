//! Ring-buffer records from the eBPF programs, checked before they are read.
//!
//! Every record starts with a `RecordHeader`; its kind is decoded with `TryFrom` (an unknown id
//! is an error, never undefined behaviour), its version must match, and its length must cover
//! the body before a byte of it is read.

use routeguard_common::{
    AckRecord, IoctlResultRecord, KernelRecord, NotifyRecord, RecordHeader, RecordKind,
    RequestHead, TaskRecord, UnknownKind, NOTIFY_MSG_OFFSET, PAYLOAD_OFFSET, WIRE_VERSION,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("unknown record kind {0}")]
    UnknownKind(u16),
    #[error("record version {found} (this routeguard reads version {WIRE_VERSION}); the eBPF object and the loader come from different builds")]
    Version { found: u16 },
    #[error(
        "{kind:?} record claims {claimed} bytes but {available} arrived (needs at least {min})"
    )]
    Length {
        kind: RecordKind,
        claimed: usize,
        available: usize,
        min: usize,
    },
}

/// One record, borrowed from the ring buffer where it is large.
#[derive(Debug)]
pub enum Record<'a> {
    Task(Box<TaskRecord>),
    Request {
        head: RequestHead,
        payload: &'a [u8],
    },
    Ack(AckRecord),
    IoctlResult(IoctlResultRecord),
    Kernel(Box<KernelRecord>),
    Notify(Notify<'a>),
}

/// A deletion notification caught by the socket filter (`NotifyRecord`), its message borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notify<'a> {
    pub ts_ns: u64,
    /// The requesting thread (see `NotifyRecord`).
    pub pid: u32,
    pub tid: u32,
    /// The requesting thread's network namespace.
    pub netns_ino: u32,
    /// Length of the whole message; more than `msg.len()` when it was cut.
    pub full_len: u32,
    /// The netlink message, header included.
    pub msg: &'a [u8],
}

/// Reads a `T` from the start of `bytes`, which the caller checked is long enough.
fn read<T: Copy>(bytes: &[u8]) -> T {
    assert!(bytes.len() >= size_of::<T>());
    // SAFETY: the length is checked above; T is a repr(C) wire type of integers and byte arrays,
    // valid for any bit pattern, and read_unaligned has no alignment requirement.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
}

pub fn parse(bytes: &[u8]) -> Result<Record<'_>, RecordError> {
    if bytes.len() < size_of::<RecordHeader>() {
        return Err(RecordError::Short(bytes.len()));
    }
    let header: RecordHeader = read(bytes);
    let kind = RecordKind::try_from(header.kind)
        .map_err(|UnknownKind(id)| RecordError::UnknownKind(id))?;
    if header.version != WIRE_VERSION {
        return Err(RecordError::Version {
            found: header.version,
        });
    }
    let claimed = header.len as usize;
    let min = kind.min_len();
    if claimed < min || claimed > bytes.len() {
        return Err(RecordError::Length {
            kind,
            claimed,
            available: bytes.len(),
            min,
        });
    }
    let bytes = &bytes[..claimed];
    Ok(match kind {
        RecordKind::Task => Record::Task(Box::new(read(bytes))),
        RecordKind::Request => {
            let head: RequestHead = read(bytes);
            let payload = &bytes[PAYLOAD_OFFSET..];
            let payload = &payload[..(head.payload_len as usize).min(payload.len())];
            Record::Request { head, payload }
        }
        RecordKind::Ack => Record::Ack(read(bytes)),
        RecordKind::IoctlResult => Record::IoctlResult(read(bytes)),
        RecordKind::Kernel => Record::Kernel(Box::new(read(bytes))),
        RecordKind::Notify => {
            let field = |offset: usize| read::<u32>(&bytes[offset..]);
            let msg = &bytes[NOTIFY_MSG_OFFSET..];
            let msg_len = field(std::mem::offset_of!(NotifyRecord, msg_len)) as usize;
            Record::Notify(Notify {
                ts_ns: read(&bytes[std::mem::offset_of!(NotifyRecord, ts_ns)..]),
                pid: field(std::mem::offset_of!(NotifyRecord, pid)),
                tid: field(std::mem::offset_of!(NotifyRecord, tid)),
                netns_ino: field(std::mem::offset_of!(NotifyRecord, netns_ino)),
                full_len: field(std::mem::offset_of!(NotifyRecord, full_len)),
                msg: &msg[..msg_len.min(msg.len())],
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use routeguard_common::kind;

    fn header(kind: u16, version: u16, len: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(&version.to_ne_bytes());
        v.extend_from_slice(&len.to_ne_bytes());
        v
    }

    #[test]
    fn rejects_unknown_kinds_versions_and_lengths() {
        assert_eq!(parse(&[1, 2]).unwrap_err(), RecordError::Short(2));
        assert_eq!(
            parse(&header(99, WIRE_VERSION, 8)).unwrap_err(),
            RecordError::UnknownKind(99)
        );
        assert_eq!(
            parse(&header(kind::ACK, WIRE_VERSION + 1, 48)).unwrap_err(),
            RecordError::Version {
                found: WIRE_VERSION + 1
            }
        );
        let mut short_ack = header(kind::ACK, WIRE_VERSION, 48);
        short_ack.resize(40, 0);
        assert!(matches!(
            parse(&short_ack),
            Err(RecordError::Length {
                claimed: 48,
                available: 40,
                ..
            })
        ));
    }

    #[test]
    fn reads_a_request_and_bounds_its_payload() {
        let mut bytes = header(kind::REQUEST, WIRE_VERSION, (PAYLOAD_OFFSET + 4) as u32);
        bytes.resize(PAYLOAD_OFFSET, 0);
        // Claim more than was sent.
        let at = std::mem::offset_of!(RequestHead, payload_len);
        bytes[at..at + 4].copy_from_slice(&1000u32.to_ne_bytes());
        bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        let Record::Request { head, payload } = parse(&bytes).unwrap() else {
            panic!("not a request")
        };
        assert_eq!(head.payload_len, 1000);
        assert_eq!(payload, &[1, 2, 3, 4]);
    }

    #[test]
    fn reads_a_notification_and_bounds_its_message() {
        let mut bytes = header(kind::NOTIFY, WIRE_VERSION, (NOTIFY_MSG_OFFSET + 20) as u32);
        bytes.resize(NOTIFY_MSG_OFFSET, 0);
        let put = |bytes: &mut Vec<u8>, at: usize, v: u32| {
            bytes[at..at + 4].copy_from_slice(&v.to_ne_bytes())
        };
        put(&mut bytes, std::mem::offset_of!(NotifyRecord, tid), 4243);
        put(&mut bytes, std::mem::offset_of!(NotifyRecord, msg_len), 500);
        put(&mut bytes, std::mem::offset_of!(NotifyRecord, full_len), 20);
        bytes.extend_from_slice(&[7; 24]);
        let Record::Notify(n) = parse(&bytes).unwrap() else {
            panic!("not a notification")
        };
        assert_eq!((n.tid, n.full_len, n.msg.len()), (4243, 20, 20));
        // Shorter than a netlink header: refused before anything is read.
        let mut short = header(kind::NOTIFY, WIRE_VERSION, (NOTIFY_MSG_OFFSET + 8) as u32);
        short.resize(NOTIFY_MSG_OFFSET + 8, 0);
        assert!(matches!(parse(&short), Err(RecordError::Length { .. })));
    }
}
