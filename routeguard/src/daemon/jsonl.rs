//! JSON lines to a file, rotated by size (`events.jsonl` → `events.jsonl.1` → … → `.keep`), and
//! to stdout. Lines are [`sink::json::to_line`](crate::sink::json::to_line): one event each.
//!
//! The file is private ([`files`]): mode 0600 on the open file, never through a symlink.

use std::{
    fs::{self, File},
    io::{self, BufWriter, Write},
    os::unix::fs::{FileExt, MetadataExt},
    path::{Path, PathBuf},
};

use crate::files;

/// An append-only file that starts over once it would exceed `max_bytes`.
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    out: BufWriter<File>,
    size: u64,
    /// Device and inode of the file open, to tell when the path names another one.
    identity: (u64, u64),
}

impl RotatingFile {
    /// Opens `path` for appending (mode 0600: lines hold command lines), creating its directory
    /// (mode 0700).
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            files::create_private_dir(dir).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot create its directory {}: {e}", dir.display()),
                )
            })?;
        }
        let mut file = open_append(path)?;
        let meta = file.metadata()?;
        let mut size = meta.len();
        if size > 0 && !ends_with_newline(&file, size)? {
            // A line cut short by a failed write (a full disk): the next line starts on its own.
            file.write_all(b"\n")?;
            size += 1;
        }
        Ok(Self {
            path: path.to_owned(),
            max_bytes,
            keep,
            out: BufWriter::new(file),
            size,
            identity: (meta.dev(), meta.ino()),
        })
    }

    /// Closes the file without writing what the buffer holds (after a failed write: written
    /// later, it would land in pieces).
    pub fn abandon(self) {
        let (_file, _unwritten) = self.out.into_parts();
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the path no longer names the file open (removed with its directory, renamed by
    /// logrotate, replaced): lines written now would reach nobody.
    pub fn is_replaced(&self) -> bool {
        fs::symlink_metadata(&self.path).map_or(true, |m| (m.dev(), m.ino()) != self.identity)
    }

    /// Appends one line (a newline is added). A line longer than `max_bytes` still goes in
    /// whole, alone in its file: rotation never splits an event.
    pub fn write_line(&mut self, line: &str) -> io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.size += len;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.out.flush()?;
        if self.keep > 0 {
            let numbered = |n: u32| {
                let mut p = self.path.clone().into_os_string();
                p.push(format!(".{n}"));
                PathBuf::from(p)
            };
            // The oldest is overwritten by the rename chain: .keep-1 → .keep, …, base → .1.
            for n in (1..self.keep).rev() {
                match fs::rename(numbered(n), numbered(n + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            fs::rename(&self.path, numbered(1))?;
            let file = open_append(&self.path)?;
            let meta = file.metadata()?;
            self.identity = (meta.dev(), meta.ino());
            self.out = BufWriter::new(file);
        } else {
            self.out.get_ref().set_len(0)?;
        }
        self.size = 0;
        Ok(())
    }
}

fn ends_with_newline(file: &File, size: u64) -> io::Result<bool> {
    let mut last = [0u8];
    file.read_exact_at(&mut last, size - 1)?;
    Ok(last[0] == b'\n')
}

fn open_append(path: &Path) -> io::Result<File> {
    files::open_private(path, files::Write::Append)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("routeguard-jsonl-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn rotates_by_size_keeping_n_files() {
        let dir = temp_dir("rotate");
        let path = dir.join("events.jsonl");
        let mut f = RotatingFile::open(&path, 20, 2).unwrap();
        for i in 0..5 {
            // 10 bytes with the newline: two lines per file.
            f.write_line(&format!("{{\"n\":{i:03}}}")).unwrap();
        }
        f.flush().unwrap();
        let read = |p: &Path| fs::read_to_string(p).unwrap();
        assert_eq!(read(&path), "{\"n\":004}\n");
        assert_eq!(
            read(&dir.join("events.jsonl.1")),
            "{\"n\":002}\n{\"n\":003}\n"
        );
        assert_eq!(
            read(&dir.join("events.jsonl.2")),
            "{\"n\":000}\n{\"n\":001}\n"
        );
        assert!(!dir.join("events.jsonl.3").exists());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlink_is_refused_a_loose_file_tightened_and_a_removed_one_noticed() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let dir = temp_dir("private");
        let path = dir.join("events.jsonl");
        fs::create_dir_all(&dir).unwrap();
        let target = dir.join("elsewhere");
        symlink(&target, &path).unwrap();
        let err = RotatingFile::open(&path, 100, 1).err().unwrap().to_string();
        assert!(err.contains("is a symbolic link"), "{err}");
        assert!(!target.exists(), "nothing created through the link");
        fs::remove_file(&path).unwrap();
        fs::write(&path, "old\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let mut f = RotatingFile::open(&path, 100, 1).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!f.is_replaced());
        // Rotation keeps tracking the file at the path.
        f.write_line(&"x".repeat(120)).unwrap();
        f.flush().unwrap();
        assert!(!f.is_replaced());
        fs::remove_dir_all(&dir).unwrap();
        assert!(f.is_replaced());
    }

    #[test]
    fn a_line_cut_short_is_ended_before_the_next() {
        let dir = temp_dir("cut");
        let path = dir.join("e.jsonl");
        fs::create_dir_all(&dir).unwrap();
        fs::write(&path, "{\"n\":1}\n{\"n\":").unwrap();
        let mut f = RotatingFile::open(&path, 1000, 1).unwrap();
        f.write_line("{\"n\":3}").unwrap();
        f.flush().unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "{\"n\":1}\n{\"n\":\n{\"n\":3}\n"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keep_zero_truncates_and_reopen_appends() {
        let dir = temp_dir("truncate");
        let path = dir.join("e.jsonl");
        let mut f = RotatingFile::open(&path, 12, 0).unwrap();
        f.write_line("aaaaaaaaaa").unwrap();
        f.write_line("bbbbbbbbbb").unwrap();
        f.flush().unwrap();
        drop(f);
        assert_eq!(fs::read_to_string(&path).unwrap(), "bbbbbbbbbb\n");
        let mut f = RotatingFile::open(&path, 100, 0).unwrap();
        f.write_line("c").unwrap();
        f.flush().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "bbbbbbbbbb\nc\n");
        fs::remove_dir_all(&dir).unwrap();
    }
}
