//! A minimal writer for the "newc" cpio format, the one the kernel unpacks as an initramfs
//! (Documentation/driver-api/early-userspace/buffer-format.rst). Writing it here keeps the VM
//! harness free of a `cpio` tool and lets it add device nodes (/dev/console) without root
//! tricks on the host.
use std::io::{self, Write};

/// File types, as the mode bits the format carries.
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;

/// An in-memory archive; entries keep the order they were added in (a directory before its
/// files, which the kernel's unpacker requires).
#[derive(Default)]
pub struct Archive {
    bytes: Vec<u8>,
    next_ino: u32,
}

impl Archive {
    pub fn dir(&mut self, path: &str) {
        self.entry(path, S_IFDIR | 0o755, (0, 0), &[]);
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.entry(path, S_IFREG | mode, (0, 0), data);
    }

    /// A character device node (e.g. /dev/console, 5:1).
    pub fn char_dev(&mut self, path: &str, major: u32, minor: u32) {
        self.entry(path, S_IFCHR | 0o600, (major, minor), &[]);
    }

    /// Appends the trailer and writes the archive.
    pub fn write_to(mut self, out: &mut impl Write) -> io::Result<()> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        out.write_all(&self.bytes)
    }

    fn entry(&mut self, path: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.next_ino += 1;
        let name_size = path.len() + 1;
        let fields = [
            self.next_ino,
            mode,
            0, // uid
            0, // gid
            if mode & S_IFDIR == S_IFDIR { 2 } else { 1 },
            0, // mtime: reproducible archives
            u32::try_from(data.len()).expect("initramfs files are far below 4 GiB"),
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            u32::try_from(name_size).expect("short paths"),
            0, // check (only for the "070702" variant)
        ];
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(path.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    /// Header+name and data are each padded to a multiple of 4 bytes.
    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_newc_entries_aligned() {
        let mut archive = Archive::default();
        archive.dir("bin");
        archive.file("bin/x", 0o755, b"hello");
        archive.char_dev("console", 5, 1);
        let mut out = Vec::new();
        archive.write_to(&mut out).unwrap();
        assert_eq!(&out[..6], b"070701");
        // First header: ino 1, mode dir|0755, name "bin\0" → 110 + 4 bytes, padded to 116.
        assert_eq!(&out[6..14], b"00000001");
        assert_eq!(&out[14..22], b"000041ed");
        assert_eq!(&out[110..114], b"bin\0");
        assert_eq!(&out[116..122], b"070701");
        assert_eq!(out.len() % 4, 0);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("hello"));
        // 110-byte header + "TRAILER!!!\0" = 121 bytes, padded with three NULs to 124.
        assert!(text.ends_with("TRAILER!!!\0\0\0\0"));
    }
}
