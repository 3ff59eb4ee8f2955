//! Whether a network namespace whose /run/netns name is gone is still alive.
//!
//! `ip netns del` only unmounts the name; the namespace is destroyed (and everything in it
//! removed) when its last reference goes. The references that can be seen from userspace are
//! processes inside it and nsfs bind mounts. An open file descriptor or socket of another
//! process also keeps it alive and is not looked for: such a namespace is reported as exited.

use std::fs;

/// A process other than this one runs in namespace `ino`, or a bind mount holds it.
pub(super) fn elsewhere(ino: u64) -> bool {
    let target = format!("net:[{ino}]");
    // mountinfo's fourth field is the mount's root; for an nsfs mount, `net:[INODE]`.
    let mounted = fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| {
        m.lines()
            .any(|l| l.split(' ').nth(3) == Some(target.as_str()))
    });
    if mounted {
        return true;
    }
    let me = std::process::id().to_string();
    let Ok(dir) = fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|entry| {
        let name = entry.file_name();
        let pid = name.to_string_lossy();
        pid.bytes().all(|b| b.is_ascii_digit())
            && pid != me
            && fs::read_link(entry.path().join("ns/net"))
                .is_ok_and(|link| link.as_os_str() == target.as_str())
    })
}
