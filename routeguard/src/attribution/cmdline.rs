//! Byte arrays from the kernel turned into strings: NUL-terminated names and NUL-separated argv.
//!
//! Everything here came from a process and is untrusted: it is decoded lossily and never
//! interpreted. Escaping for display is the sinks' job.

/// The bytes before the first NUL (all of them when there is none), as lossy UTF-8.
pub fn cstr_lossy(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Like [`cstr_lossy`], but an empty name is `None`.
pub fn cstr_opt(bytes: &[u8]) -> Option<String> {
    Some(cstr_lossy(bytes)).filter(|s| !s.is_empty())
}

/// Splits NUL-separated arguments (as in `/proc/PID/cmdline`). Trailing empty pieces are
/// dropped: the terminating NUL, and the NUL padding some processes leave after rewriting their
/// argv (setproctitle). Empty arguments in the middle (`ip rule add ""`) are kept.
pub fn split_args(bytes: &[u8]) -> Vec<String> {
    let mut argv: Vec<String> = bytes
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    while argv.last().is_some_and(|a| a.is_empty()) {
        argv.pop();
    }
    argv
}

/// argv joined by spaces, each argument single-quoted only when a POSIX shell would need it:
/// `sh -c 'ip rule del prio 100'`.
pub fn join_quoted(argv: &[String]) -> String {
    let mut out = String::new();
    for (i, arg) in argv.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        push_quoted(&mut out, arg);
    }
    out
}

fn push_quoted(out: &mut String, arg: &str) {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
    if plain {
        out.push_str(arg);
        return;
    }
    out.push('\'');
    for c in arg.chars() {
        if c == '\'' {
            // Close the quote, add an escaped quote, reopen: 'it'\''s'.
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn cstr_stops_at_nul_and_is_lossy() {
        assert_eq!(cstr_lossy(b"ip\0\0garbage"), "ip");
        assert_eq!(cstr_lossy(b"no-nul"), "no-nul");
        assert_eq!(cstr_lossy(b"bad\xffutf8\0"), "bad\u{fffd}utf8");
        assert_eq!(cstr_opt(b"\0\0"), None);
        assert_eq!(cstr_opt(b"x\0"), Some("x".to_string()));
    }

    #[test]
    fn splits_argv_dropping_trailing_empties_only() {
        assert_eq!(
            split_args(b"ip\0rule\0del\0prio\x00100\0"),
            args(&["ip", "rule", "del", "prio", "100"])
        );
        assert_eq!(
            split_args(b"ip\0rule\0add\0\0from\0"),
            args(&["ip", "rule", "add", "", "from"])
        );
        assert_eq!(
            split_args(b"nginx: worker\0\0\0\0"),
            args(&["nginx: worker"])
        );
        // Truncated capture: the last argument is cut, not dropped.
        assert_eq!(split_args(b"sh\0-c\0ip ro"), args(&["sh", "-c", "ip ro"]));
        assert!(split_args(b"").is_empty());
        assert!(split_args(b"\0").is_empty());
    }

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(
            join_quoted(&args(&["sh", "-c", "ip rule del prio 100"])),
            "sh -c 'ip rule del prio 100'"
        );
        assert_eq!(
            join_quoted(&args(&[
                "ip",
                "route",
                "del",
                "10.1.0.0/24",
                "via",
                "10.0.0.1"
            ])),
            "ip route del 10.1.0.0/24 via 10.0.0.1"
        );
        assert_eq!(
            join_quoted(&args(&["echo", "", "it's"])),
            "echo '' 'it'\\''s'"
        );
        assert_eq!(
            join_quoted(&args(&["a$b", "x;y", "fe80::1%eth0"])),
            "'a$b' 'x;y' fe80::1%eth0"
        );
        assert_eq!(join_quoted(&[]), "");
    }
}
