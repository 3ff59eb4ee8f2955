//! `suppressed`: a summary of removal requests the kernel programs did not copy because their
//! sender was over its budget (`capture::budget`). Not a removal: a line of its own in the JSON
//! stream, told apart by `event` (and `kind`), with the fields docs/events.md lists under
//! "Suppressed requests".

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Host, Netns, Timestamp, SCHEMA_VERSION};

/// One (network namespace, cgroup)'s suppressed requests since the previous summary.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Suppressed {
    pub schema_version: u32,
    pub ts: Timestamp,
    /// Always `suppressed`.
    pub event: String,
    /// Always `suppressed`: a reader dispatching on `kind` skips it as no removal.
    pub kind: String,
    /// The namespace of the sender's socket.
    pub netns: Netns,
    /// The sender's cgroup v2 id, and its path when the cgroup still exists.
    pub cgroup_id: u64,
    pub cgroup: Option<String>,
    /// uid and pid of the last sender suppressed.
    pub uid: u32,
    pub pid: u32,
    /// Requests (sends, each one or more netlink messages) not copied; their bytes; and how
    /// many of them rtnetlink was predicted to refuse (the others were privileged requests in
    /// another namespace).
    pub count: u64,
    pub bytes: u64,
    pub refused: u64,
    /// First and last suppression in this summary.
    pub first: Timestamp,
    pub last: Timestamp,
    pub host: Option<Arc<Host>>,
}

pub const SUPPRESSED: &str = "suppressed";

impl Suppressed {
    #[expect(
        clippy::too_many_arguments,
        reason = "a plain constructor of the wire shape"
    )]
    pub fn new(
        ts: Timestamp,
        netns: Netns,
        cgroup_id: u64,
        cgroup: Option<String>,
        (uid, pid): (u32, u32),
        (count, bytes, refused): (u64, u64, u64),
        (first, last): (Timestamp, Timestamp),
        host: Option<Arc<Host>>,
    ) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            ts,
            event: SUPPRESSED.into(),
            kind: SUPPRESSED.into(),
            netns,
            cgroup_id,
            cgroup,
            uid,
            pid,
            count,
            bytes,
            refused,
            first,
            last,
            host,
        }
    }

    /// One line of JSON, without the newline.
    pub fn to_line(&self) -> String {
        // Strings and numbers: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The summary in a sentence (the terminal, the journal's `MESSAGE`).
    pub fn message(&self) -> String {
        let netns = self
            .netns
            .name
            .clone()
            .unwrap_or_else(|| self.netns.inode.to_string());
        format!(
            "routeguard suppressed {} removal request(s) ({} bytes; {} predicted refused) from uid {} pid {} in cgroup {} (id {}), netns {netns}, {} to {}: over their budget, not recorded one by one",
            self.count,
            self.bytes,
            self.refused,
            self.uid,
            self.pid,
            self.cgroup.as_deref().unwrap_or("?"),
            self.cgroup_id,
            self.first.rfc3339(),
            self.last.rfc3339(),
        )
    }
}
