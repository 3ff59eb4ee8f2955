//! The programs' own log lines (aya-log), forwarded into `tracing` from a thread of their own.
//!
//! The programs log only rare conditions userspace cannot see — a read that faulted, a request
//! cut at the copy limit, an offset missing when first needed — each rate-limited in the kernel
//! (routeguard-ebpf `programs/rare.rs`). Whether they log at all is fixed at load: the loader
//! writes `AYA_LOG_LEVEL`, a read-only global, from what the `tracing` filter lets through for
//! [`TARGET`]: nothing by default, debug with `-v`, trace with `-vv` (`RUST_LOG` may name
//! `routeguard::ebpf` itself). At level off the verifier removes the logging code from the
//! programs, and no reader thread runs.
//!
//! Lines are read from the `AYA_LOGS` ring on `routeguard-ebpf-log`, never on the ring drain: a
//! slow terminal or journal must not stop the events' ring from being emptied.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
};

use aya::Ebpf;
use aya_log::{EbpfLogger, Level};

/// The `tracing` target of every forwarded line, and the one the level is chosen from.
pub const TARGET: &str = "routeguard::ebpf";

/// The level the programs log at, from the `tracing` filter in force: the most verbose level it
/// lets through for [`TARGET`], or `None` (off).
pub fn level() -> Option<Level> {
    level_from(|level| match level {
        tracing::Level::TRACE => tracing::enabled!(target: TARGET, tracing::Level::TRACE),
        tracing::Level::DEBUG => tracing::enabled!(target: TARGET, tracing::Level::DEBUG),
        tracing::Level::INFO => tracing::enabled!(target: TARGET, tracing::Level::INFO),
        tracing::Level::WARN => tracing::enabled!(target: TARGET, tracing::Level::WARN),
        tracing::Level::ERROR => tracing::enabled!(target: TARGET, tracing::Level::ERROR),
    })
}

fn level_from(enabled: impl Fn(tracing::Level) -> bool) -> Option<Level> {
    [
        (tracing::Level::TRACE, Level::Trace),
        (tracing::Level::DEBUG, Level::Debug),
        (tracing::Level::INFO, Level::Info),
        (tracing::Level::WARN, Level::Warn),
        (tracing::Level::ERROR, Level::Error),
    ]
    .into_iter()
    .find(|(ours, _)| enabled(*ours))
    .map(|(_, theirs)| theirs)
}

/// The value of the programs' `AYA_LOG_LEVEL` global: 0 is off (aya-log's levels start at 1).
pub fn global(level: Option<Level>) -> u8 {
    level.map_or(0, u8::from)
}

/// Hands aya-log's records to `tracing`, under [`TARGET`], with the program source line.
pub struct Forward;

impl log::Log for Forward {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        // The level was chosen at load; the subscriber filters what it shows.
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        // `file!()` in the eBPF crate: `routeguard-ebpf/src/programs/send.rs`.
        let file = record.file().unwrap_or("?");
        let at = format_args!(
            "{}:{}",
            file.rsplit_once("src/").map_or(file, |(_, inside)| inside),
            record.line().unwrap_or(0)
        );
        let message = record.args();
        match record.level() {
            log::Level::Error => tracing::error!(target: TARGET, ebpf = %at, "{message}"),
            log::Level::Warn => tracing::warn!(target: TARGET, ebpf = %at, "{message}"),
            log::Level::Info => tracing::info!(target: TARGET, ebpf = %at, "{message}"),
            log::Level::Debug => tracing::debug!(target: TARGET, ebpf = %at, "{message}"),
            log::Level::Trace => tracing::trace!(target: TARGET, ebpf = %at, "{message}"),
        }
    }

    fn flush(&self) {}
}

/// The programs' log ring, taken from a freshly loaded object.
pub struct Logs(EbpfLogger<Forward>);

impl Logs {
    /// Takes the `AYA_LOGS` map out of `ebpf` when the programs were loaded with logging on;
    /// `None` (with a line saying why) otherwise.
    pub fn take(ebpf: &mut Ebpf, level: Option<Level>) -> Option<Self> {
        level?;
        match EbpfLogger::init_with_logger(ebpf, Forward) {
            Ok(logger) => Some(Self(logger)),
            Err(err) => {
                tracing::warn!(%err, "the programs' log lines cannot be read; they are lost");
                None
            }
        }
    }
}

/// The thread that reads [`Logs`] (`routeguard-ebpf-log`); stops and joins when dropped.
pub struct Reader {
    stop: Arc<AtomicBool>,
    /// Written to wake the thread out of its wait when it must stop.
    wake: Arc<OwnedFd>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Reader {
    pub fn start(logs: Logs) -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; a valid fd is owned below, an error is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        let stop = Arc::new(AtomicBool::new(false));
        let (stopping, woken) = (Arc::clone(&stop), Arc::clone(&wake));
        let thread = thread::Builder::new()
            .name("routeguard-ebpf-log".into())
            .spawn(move || read(logs, &stopping, &woken))?;
        Ok(Self {
            stop,
            wake,
            thread: Some(thread),
        })
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to the eventfd we own.
        unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Forwards lines as the kernel wakes the ring's reader, until told to stop (forwarding what
/// is left first). Blocks only in `poll(2)`, on the ring and the wake-up eventfd.
fn read(Logs(mut logger): Logs, stop: &AtomicBool, wake: &OwnedFd) {
    loop {
        logger.flush();
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let poll = |fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let mut fds = [poll(logger.as_raw_fd()), poll(wake.as_raw_fd())];
        // SAFETY: two valid pollfds for the duration of the call; the ring's fd is owned by the
        // logger this thread holds, the eventfd by the `Reader` that outlives the thread.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn the_level_is_the_most_verbose_one_the_filter_lets_through() {
        assert_eq!(level_from(|_| false), None);
        assert_eq!(global(level_from(|_| false)), 0);
        let up_to = |max: tracing::Level| move |l: tracing::Level| l <= max;
        assert_eq!(level_from(up_to(tracing::Level::TRACE)), Some(Level::Trace));
        assert_eq!(level_from(up_to(tracing::Level::DEBUG)), Some(Level::Debug));
        assert_eq!(level_from(up_to(tracing::Level::WARN)), Some(Level::Warn));
        assert_eq!(global(Some(Level::Trace)), 5);
        assert_eq!(global(Some(Level::Debug)), 4);
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn records_reach_tracing_under_the_target_with_their_source_line() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
                "{TARGET}=debug"
            )))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for level in [log::Level::Debug, log::Level::Trace] {
                log::Log::log(
                    &Forward,
                    &log::Record::builder()
                        .level(level)
                        .target("routeguard::programs::send")
                        .file(Some("routeguard-ebpf/src/programs/send.rs"))
                        .line(Some(140))
                        .args(format_args!("pid 42: cut at {} bytes", 8191))
                        .build(),
                );
            }
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains(
                "DEBUG routeguard::ebpf: pid 42: cut at 8191 bytes ebpf=programs/send.rs:140"
            ),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1, "trace is filtered out: {text}");
    }
}
