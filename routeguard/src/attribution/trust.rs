//! Which names in a cgroup path root chose.
//!
//! Anyone who may write to a cgroup directory may create cgroups in it, with any name. systemd
//! hands a user's manager (`user@UID.service`) and every unit with `Delegate=yes` its own
//! subtree by giving the directory to that user (systemd.resource-control(5), "Delegate="; the
//! kernel's cgroup-v2.rst, "Delegation"): below it, the user can make
//! `kubepods.slice/…/cri-containerd-<id>.scope` as easily as kubelet. So a name is trusted only
//! when every directory above it is owned by root and writable by nobody else; the deepest
//! such name (`user@1000.service` itself, named by systemd) still is.

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

/// Group and other write bits.
const WRITABLE_BY_OTHERS: u32 = 0o022;

/// Judges cgroup names by who owns the directories above them.
#[derive(Clone, Copy, Debug)]
pub struct Trust {
    /// The owner trusted: root, or in unit tests the user running them.
    owner: u32,
}

impl Trust {
    /// Trusts root only.
    pub fn root() -> Self {
        Self { owner: 0 }
    }

    /// Trusts directories of `owner` (unit tests: the fixtures belong to whoever runs them).
    #[cfg(test)]
    pub fn owner(owner: u32) -> Self {
        Self { owner }
    }

    /// How many of `components` (a cgroup's path below the mount at `mount`, outermost first)
    /// were named by the trusted owner: each needs every directory above it, the mount's root
    /// included, owned by it and writable by no one else. A directory that cannot be read (the
    /// cgroup went away meanwhile) ends the count: what cannot be checked is not trusted.
    pub fn depth(&self, mount: &Path, components: &[&str]) -> usize {
        let mut dir = mount.to_path_buf();
        for (i, name) in components.iter().enumerate() {
            if !self.owns(&dir) {
                return i;
            }
            dir.push(name);
        }
        components.len()
    }

    /// Whether `path` (not followed if a symlink: a link's own mode means nothing) belongs to
    /// the trusted owner.
    pub fn owns_entry(&self, path: &Path) -> bool {
        fs::symlink_metadata(path).is_ok_and(|m| m.uid() == self.owner)
    }

    /// Whether `path` (a file, not followed if a symlink) belongs to the trusted owner and no
    /// one else may write to it.
    pub fn owns(&self, path: &Path) -> bool {
        fs::symlink_metadata(path)
            .is_ok_and(|m| m.uid() == self.owner && m.mode() & WRITABLE_BY_OTHERS == 0)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::attribution::test_dir::TestDir;

    fn euid() -> u32 {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    }

    #[test]
    fn counts_names_below_owned_directories_only() {
        let dir = TestDir::new("trust");
        let root = dir.path();
        fs::create_dir_all(root.join("user.slice/user@1000.service/app.slice/x.scope")).unwrap();
        let trust = Trust::owner(euid());
        let path = ["user.slice", "user@1000.service", "app.slice", "x.scope"];
        assert_eq!(trust.depth(root, &path), 4);

        // Delegated: the user's manager owns its directory, so names below it are the user's.
        // Simulated with a write bit for others (chown needs root; both make it another's).
        let delegated = root.join("user.slice/user@1000.service");
        fs::set_permissions(&delegated, fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(
            trust.depth(root, &path),
            2,
            "user@1000.service, not app.slice"
        );
        // Another owner entirely.
        assert_eq!(Trust::owner(euid() + 1).depth(root, &path), 0);
        // A cgroup that is gone cannot be checked.
        assert_eq!(trust.depth(root, &["gone.slice", "x.scope"]), 1);
        assert_eq!(trust.depth(root, &[]), 0);
    }
}
