//! Files routeguard writes hold command lines, parent chains and cgroup paths: they are private
//! to their owner (mode 0600) and never written through a symbolic link.
//!
//! The daemon runs as root in directories (`/var/log/routeguard`, `/var/lib/routeguard`) that
//! an administrator may have made group-writable; a symlink planted at the path would make root
//! append to a file of the planter's choosing. So the last component is opened with
//! `O_NOFOLLOW` (the kernel refuses a symlink with `ELOOP`, turned here into a sentence), only a
//! regular file is accepted, and the mode is set with `fchmod` on the descriptor just opened —
//! not by path, which could name another file by then — even when the file existed with a looser
//! mode. Directories routeguard creates are 0700.

use std::{
    fs::{DirBuilder, File, OpenOptions, Permissions},
    io,
    os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt},
    path::Path,
};

/// The mode of every file routeguard writes.
pub const PRIVATE: u32 = 0o600;

/// How [`open_private`] opens the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// Appending, created if absent (JSON lines).
    Append,
    /// Emptied, created if absent (a report).
    Truncate,
    /// Left as it is, created if absent (the store, which SQLite then opens itself).
    Keep,
}

/// Opens `path` for writing, private (see the module's comment). The error says what to do
/// when the path is a symlink or not a regular file.
pub fn open_private(path: &Path, how: Write) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options
        .create(true)
        .mode(PRIVATE)
        // O_NONBLOCK: a FIFO at the path fails at once (ENXIO) instead of blocking the daemon
        // until a reader comes; it changes nothing for a regular file.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC);
    match how {
        // Readable too: the JSON lines file's last byte is looked at (a line cut short).
        Write::Append => options.read(true).append(true),
        Write::Truncate => options.write(true).truncate(true),
        Write::Keep => options.write(true),
    };
    let file = options.open(path).map_err(|e| explain(path, e))?;
    make_private(path, &file)?;
    Ok(file)
}

/// Sets an already-existing file to mode 0600 through its descriptor, refusing a symlink or a
/// file that is not regular (for the files SQLite creates beside the store: `-wal`, `-shm`).
/// Absent is fine.
pub fn tighten_existing(path: &Path) -> io::Result<()> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(explain(path, e)),
    };
    make_private(path, &file)
}

/// Creates `dir` and its missing parents with mode 0700 (an existing one is left as it is).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

fn make_private(path: &Path, file: &File) -> io::Result<()> {
    let meta = file.metadata()?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "a device"
        };
        return Err(io::Error::other(format!(
            "{} is {what}, not a regular file; name a file",
            path.display()
        )));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode != PRIVATE {
        tracing::warn!(
            "{} had mode {mode:o}; setting 0600 (it holds command lines)",
            path.display()
        );
        file.set_permissions(Permissions::from_mode(PRIVATE))?;
    }
    Ok(())
}

/// `ELOOP` from `O_NOFOLLOW` means a symlink; `ENXIO` from `O_NONBLOCK` a FIFO nobody reads.
fn explain(path: &Path, e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ELOOP) => io::Error::other(format!(
            "{} is a symbolic link, and routeguard does not write through one (it writes \
             command lines, as root); name the file itself",
            path.display()
        )),
        Some(libc::ENXIO) => io::Error::other(format!(
            "{} is a FIFO or socket, not a regular file; name a file",
            path.display()
        )),
        _ => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{fs, io::Write as _, os::unix::fs::symlink};

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("rg-files-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn created_private_and_a_looser_existing_file_is_tightened_on_its_fd() {
        let dir = temp_dir("mode");
        let new = dir.join("new");
        open_private(&new, Write::Append).unwrap();
        assert_eq!(mode(&new), 0o600);
        let old = dir.join("old");
        fs::write(&old, "kept\n").unwrap();
        fs::set_permissions(&old, Permissions::from_mode(0o644)).unwrap();
        let mut f = open_private(&old, Write::Append).unwrap();
        f.write_all(b"more\n").unwrap();
        assert_eq!(mode(&old), 0o600);
        assert_eq!(fs::read_to_string(&old).unwrap(), "kept\nmore\n");
        open_private(&old, Write::Truncate).unwrap();
        assert_eq!(fs::read_to_string(&old).unwrap(), "");
        fs::set_permissions(&old, Permissions::from_mode(0o664)).unwrap();
        tighten_existing(&old).unwrap();
        assert_eq!(mode(&old), 0o600);
        tighten_existing(&dir.join("absent")).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlink_is_refused_and_its_target_untouched() {
        let dir = temp_dir("link");
        let target = dir.join("target");
        fs::write(&target, "theirs\n").unwrap();
        fs::set_permissions(&target, Permissions::from_mode(0o644)).unwrap();
        let link = dir.join("events.jsonl");
        symlink(&target, &link).unwrap();
        for how in [Write::Append, Write::Truncate, Write::Keep] {
            let err = open_private(&link, how).unwrap_err().to_string();
            assert!(err.contains("is a symbolic link"), "{err}");
            assert!(err.contains(&link.display().to_string()), "{err}");
        }
        let err = tighten_existing(&link).unwrap_err().to_string();
        assert!(err.contains("is a symbolic link"), "{err}");
        // A dangling link is refused too (O_CREAT would have created its target).
        let dangling = dir.join("dangling");
        symlink(dir.join("nowhere"), &dangling).unwrap();
        assert!(open_private(&dangling, Write::Append).is_err());
        assert!(!dir.join("nowhere").exists());
        assert_eq!(fs::read_to_string(&target).unwrap(), "theirs\n");
        assert_eq!(mode(&target), 0o644);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn not_a_regular_file_is_refused() {
        let dir = temp_dir("kind");
        let err = open_private(&dir, Write::Keep).unwrap_err().to_string();
        assert!(
            err.contains("Is a directory") || err.contains("a directory"),
            "{err}"
        );
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo(3) with a NUL-terminated path that lives across the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let before = mode(&fifo);
        let err = open_private(&fifo, Write::Append).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        assert_eq!(mode(&fifo), before, "its mode is left alone");
        fs::remove_dir_all(&dir).unwrap();
    }
}
