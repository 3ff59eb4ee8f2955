//! The ring drain: the only thread that reads the kernel's ring buffer, and one that never
//! waits on anything but the ring itself.
//!
//! It moves records out of the ring into chunks (`Bytes`, each record framed by its length) and
//! hands them to the correlating thread through the [`Queue`]. It never decodes, looks anything
//! up, writes, locks or waits for a consumer: a record leaves the ring as fast as memcpy, so the
//! ring (a few MiB, a fraction of a second of a burst) only has to cover the drain's scheduling
//! delay, while the queue (tens of MiB) covers the consumers falling behind. When the queue is
//! at its bound the chunk is dropped and every record in it counted, by kind, exactly like ring
//! loss: never silently.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        mpsc::Sender,
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use routeguard_common::{kind, syscall};

use crate::{
    capture::Keepalive,
    decode::{self, record::Record},
    mirror::News,
    netlink,
};

/// A chunk is sent once it holds this much (or the ring is empty).
const CHUNK_BYTES: usize = 256 << 10;
/// How long the drain waits for the kernel's wake-up while records flow: records below the
/// ring's wake-up threshold are picked up at least this often.
pub const TICK: Duration = Duration::from_millis(10);
/// The wait once nothing has arrived for a second.
pub const IDLE_TICK: Duration = Duration::from_millis(100);
const IDLE_AFTER: Duration = Duration::from_secs(1);
/// With [`Pacing::Deep`] (the daemon), the wait once quiet for six seconds: an idle daemon's
/// drain wakes once a second. A burst still wakes it at once (the ring's wake-up threshold), so
/// does every record when the ring wakes on each (protect policies).
pub const DEEP_IDLE_TICK: Duration = Duration::from_secs(1);
const DEEP_AFTER: Duration = Duration::from_secs(6);

/// How the drain slows down when nothing happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    /// Every [`IDLE_TICK`] at the slowest (`trace` shows events within 100 ms).
    Interactive,
    /// Down to [`DEEP_IDLE_TICK`] (the daemon).
    Deep,
}

/// What reaches the correlating thread.
pub enum Input {
    /// Records, each as `u32` length (native endian) then its bytes.
    Records(Chunk),
    /// What the route mirror learnt (it wakes the correlating thread). Boxed: records are the
    /// many inputs, and small.
    News(Box<News>),
    /// Drain what is left and stop.
    Stop,
}

pub struct Chunk {
    bytes: Bytes,
    /// Bytes charged to the queue's bound (returned when the chunk is dropped).
    charged: Option<Arc<Queue>>,
}

impl Chunk {
    /// The records of the chunk, in ring order.
    pub fn records(&self) -> Records<'_> {
        Records { rest: &self.bytes }
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if let Some(queue) = self.charged.take() {
            queue.used.fetch_sub(self.bytes.len(), Ordering::Relaxed);
        }
    }
}

pub struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Records<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.len() < 4 {
            return None;
        }
        let len = (&self.rest[..4]).get_u32_ne() as usize;
        let record = self.rest.get(4..4 + len)?;
        self.rest = &self.rest[4 + len..];
        Some(record)
    }
}

/// Records dropped because the queue was at its bound, by record kind: each once, under its
/// own cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueDrops {
    /// Requests and kernel-function records: removals never seen.
    pub events: u64,
    /// Replies (acks, ioctl results): those removals show `unknown`.
    pub replies: u64,
    /// Process details (those actors come from /proc).
    pub tasks: u64,
    /// Deletion notifications (their requests' events still come, from the ack).
    pub notifications: u64,
}

impl QueueDrops {
    pub fn total(&self) -> u64 {
        self.events + self.replies + self.tasks + self.notifications
    }
}

/// The bound between the drain and the correlating thread, in bytes of records queued.
pub struct Queue {
    bound: usize,
    used: AtomicUsize,
    dropped_events: AtomicU64,
    dropped_replies: AtomicU64,
    dropped_tasks: AtomicU64,
    dropped_notifications: AtomicU64,
}

impl Queue {
    pub fn new(bound: usize) -> Arc<Self> {
        Arc::new(Self {
            bound,
            used: AtomicUsize::new(0),
            dropped_events: AtomicU64::new(0),
            dropped_replies: AtomicU64::new(0),
            dropped_tasks: AtomicU64::new(0),
            dropped_notifications: AtomicU64::new(0),
        })
    }

    /// The bound in bytes.
    pub fn bound(&self) -> usize {
        self.bound
    }

    /// No records are queued: the consumer has caught up with what the drain moved.
    pub fn is_empty(&self) -> bool {
        self.used.load(Ordering::Relaxed) == 0
    }

    pub fn drops(&self) -> QueueDrops {
        QueueDrops {
            events: self.dropped_events.load(Ordering::Relaxed),
            replies: self.dropped_replies.load(Ordering::Relaxed),
            tasks: self.dropped_tasks.load(Ordering::Relaxed),
            notifications: self.dropped_notifications.load(Ordering::Relaxed),
        }
    }

    /// Charges `bytes` to the bound, or counts its records as dropped.
    fn admit(self: &Arc<Self>, bytes: Bytes) -> Option<Chunk> {
        let len = bytes.len();
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            if used + len > self.bound {
                self.count_dropped(&bytes);
                return None;
            }
            match self.used.compare_exchange_weak(
                used,
                used + len,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(Chunk {
                        bytes,
                        charged: Some(Arc::clone(self)),
                    })
                }
                Err(now) => used = now,
            }
        }
    }

    fn count_dropped(&self, bytes: &Bytes) {
        let (mut events, mut replies, mut tasks, mut notifications) = (0, 0, 0, 0);
        for record in (Records { rest: bytes }) {
            let kind = record
                .get(..2)
                .map_or(0, |k| u16::from_ne_bytes([k[0], k[1]]));
            match kind {
                kind::TASK => tasks += 1,
                kind::ACK | kind::IOCTL_RESULT => replies += 1,
                kind::NOTIFY => notifications += 1,
                kind::REQUEST => events += removals_in(record),
                _ => events += 1,
            }
        }
        self.dropped_events.fetch_add(events, Ordering::Relaxed);
        self.dropped_replies.fetch_add(replies, Ordering::Relaxed);
        self.dropped_tasks.fetch_add(tasks, Ordering::Relaxed);
        self.dropped_notifications
            .fetch_add(notifications, Ordering::Relaxed);
    }
}

/// The removals a dropped request record stood for: one per removal message of a netlink send
/// (`ip route flush` sends hundreds in one), one for an ioctl or a record that does not parse.
fn removals_in(record: &[u8]) -> u64 {
    match decode::record::parse(record) {
        Ok(Record::Request { head, payload }) if head.syscall != syscall::IOCTL => {
            netlink::removal_requests(payload).max(1)
        }
        _ => 1,
    }
}

/// The running drain thread.
pub struct Drain {
    stop: Arc<AtomicBool>,
    /// Written to wake the drain out of its wait when it must stop.
    wake: Arc<OwnedFd>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drain {
    /// Starts the thread: records from `ring` go to `out`, within `queue`'s bound.
    pub fn start(
        ring: RingBuf<MapData>,
        keepalive: Option<Keepalive>,
        queue: Arc<Queue>,
        out: Sender<Input>,
        pacing: Pacing,
    ) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        // SAFETY: eventfd takes no pointers; a valid fd is owned below, an error is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        let (stopping, woken) = (Arc::clone(&stop), Arc::clone(&wake));
        let thread = thread::Builder::new()
            .name("routeguard-drain".into())
            .spawn(move || {
                run(
                    ring,
                    keepalive,
                    &queue,
                    &out,
                    pacing,
                    &stopping,
                    woken.as_raw_fd(),
                )
            })?;
        Ok(Self {
            stop,
            wake,
            thread: Some(thread),
        })
    }

    /// Drains what is left in the ring, then stops; the last chunk is sent before `Stop`.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to the eventfd we own.
        unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(
    mut ring: RingBuf<MapData>,
    mut keepalive: Option<Keepalive>,
    queue: &Arc<Queue>,
    out: &Sender<Input>,
    pacing: Pacing,
    stop: &AtomicBool,
    wake: RawFd,
) {
    let fd = ring.as_raw_fd();
    let mut last_record = Instant::now();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let moved = move_records(&mut ring, queue, out);
        // "Read": the pinned programs keep recording (written by this thread, which is what
        // reads the ring: a daemon that stops reading lets them stop).
        if let Some(k) = &mut keepalive {
            k.beat_if_due();
        }
        if moved {
            last_record = Instant::now();
        }
        if stopping {
            let _ = out.send(Input::Stop);
            return;
        }
        if !moved {
            let quiet = last_record.elapsed();
            let wait = match pacing {
                Pacing::Deep if quiet >= DEEP_AFTER => DEEP_IDLE_TICK,
                _ if quiet >= IDLE_AFTER => IDLE_TICK,
                _ => TICK,
            };
            wait_readable(fd, wake, wait);
        }
    }
}

/// Moves every record waiting in the ring into chunks for the queue. Returns whether there was
/// any.
fn move_records(ring: &mut RingBuf<MapData>, queue: &Arc<Queue>, out: &Sender<Input>) -> bool {
    let mut chunk = BytesMut::new();
    let mut any = false;
    while let Some(item) = ring.next() {
        any = true;
        if chunk.capacity() == 0 {
            chunk.reserve(CHUNK_BYTES.max(item.len() + 4));
        }
        chunk.put_u32_ne(item.len() as u32);
        chunk.extend_from_slice(&item);
        drop(item);
        if chunk.len() >= CHUNK_BYTES {
            send(chunk.split().freeze(), queue, out);
            chunk = BytesMut::new();
        }
    }
    if !chunk.is_empty() {
        send(chunk.freeze(), queue, out);
    }
    any
}

fn send(bytes: Bytes, queue: &Arc<Queue>, out: &Sender<Input>) {
    if let Some(chunk) = queue.admit(bytes) {
        // A receiver that is gone (the correlating thread ended) drops it: shutting down.
        let _ = out.send(Input::Records(chunk));
    }
}

/// Waits until the ring has data (the kernel's wake-up), `wake` is written, or `timeout`
/// passes.
fn wait_readable(ring: RawFd, wake: RawFd, timeout: Duration) {
    let poll = |fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let mut fds = [poll(ring), poll(wake)];
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: two valid pollfds for the duration of the call; the ring's fd is owned by the
    // RingBuf this thread holds, the eventfd by the `Drain` that outlives the thread.
    unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(records: &[&[u8]]) -> Bytes {
        let mut b = BytesMut::new();
        for r in records {
            b.put_u32_ne(r.len() as u32);
            b.extend_from_slice(r);
        }
        b.freeze()
    }

    #[test]
    fn records_come_out_as_framed() {
        let chunk = Chunk {
            bytes: framed(&[b"ab", b"", b"cde"]),
            charged: None,
        };
        let got: Vec<&[u8]> = chunk.records().collect();
        assert_eq!(got, vec![&b"ab"[..], b"", b"cde"]);
    }

    /// A request record of `via` carrying `payload`.
    fn request_record(via: u16, payload: &[u8]) -> Vec<u8> {
        use routeguard_common::{RequestHead, PAYLOAD_OFFSET, WIRE_VERSION};
        let mut r = vec![0; PAYLOAD_OFFSET];
        r[..2].copy_from_slice(&kind::REQUEST.to_ne_bytes());
        r[2..4].copy_from_slice(&WIRE_VERSION.to_ne_bytes());
        r[4..8].copy_from_slice(&((PAYLOAD_OFFSET + payload.len()) as u32).to_ne_bytes());
        let at = std::mem::offset_of!(RequestHead, payload_len);
        r[at..at + 4].copy_from_slice(&(payload.len() as u32).to_ne_bytes());
        let at = std::mem::offset_of!(RequestHead, syscall);
        r[at..at + 2].copy_from_slice(&via.to_ne_bytes());
        r.extend_from_slice(payload);
        r
    }

    #[test]
    fn a_dropped_send_counts_each_removal_it_carried() {
        use crate::netlink::{
            request,
            uapi::{NLM_F_REQUEST, RTM_DELROUTE},
        };
        let mut flush = Vec::new();
        for seq in 0..450 {
            flush.extend(request(RTM_DELROUTE, NLM_F_REQUEST, seq, &[0; 28]));
        }
        let send = request_record(syscall::SENDMSG, &flush);
        let ioctl = request_record(syscall::IOCTL, &[0; 8]);
        let queue = Queue::new(16);
        assert!(queue.admit(framed(&[&send, &ioctl])).is_none());
        // 450 route deletes never seen, and the ioctl's one: not 2 records.
        assert_eq!(queue.drops().events, 451);
    }

    #[test]
    fn a_full_queue_drops_and_counts_by_kind_and_gives_back_on_drop() {
        let task = kind::TASK.to_ne_bytes();
        let ack = kind::ACK.to_ne_bytes();
        let request = kind::REQUEST.to_ne_bytes();
        let notify = kind::NOTIFY.to_ne_bytes();
        let queue = Queue::new(40);
        let first = queue
            .admit(framed(&[&request, &[0; 20]]))
            .expect("fits the bound");
        assert!(queue
            .admit(framed(&[&task, &ack, &ack, &request, &notify]))
            .is_none());
        // A notification is not a lost event: its request's event still comes.
        assert_eq!(
            queue.drops(),
            QueueDrops {
                events: 1,
                replies: 2,
                tasks: 1,
                notifications: 1,
            }
        );
        assert_eq!(queue.drops().total(), 5);
        drop(first);
        assert_eq!(queue.used.load(Ordering::Relaxed), 0);
        assert!(queue.admit(framed(&[&request])).is_some());
    }
}
