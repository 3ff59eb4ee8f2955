//! Which route deletes are a flush.
//!
//! The kernel has no flush request: `ip route flush` dumps the table and sends one
//! RTM_DELROUTE per route it matched. Nothing in those messages says "flush", so the rule is
//! about the sender: a route delete sent by `ip` run as `ip [OPTIONS] route flush ...` is part
//! of a flush (that command sends no other deletes). The same deletes from `ip -batch`, or from
//! any other program, stay `request`.

use crate::event::{Cause, Event, Op};

/// `ip` options (as iproute2 matches them: any prefix of the full name) that take a value.
const OPTIONS_WITH_VALUE: &[&str] = &["-netns", "-family", "-batch", "-rcvbuf", "-loops"];

/// iproute2's `matches(word, full)`: `word` is a non-empty prefix of `full`.
fn matches(word: &str, full: &str) -> bool {
    !word.is_empty() && full.starts_with(word)
}

/// `argv` is `ip [OPTIONS] route flush ...` (with iproute2's abbreviations: `ip r f`).
pub(super) fn is_ip_route_flush(argv: &[String]) -> bool {
    let Some((program, rest)) = argv.split_first() else {
        return false;
    };
    if program.rsplit('/').next() != Some("ip") {
        return false;
    }
    let mut words = rest.iter().map(String::as_str);
    let object = loop {
        let Some(word) = words.next() else {
            return false;
        };
        let Some(option) = word.strip_prefix('-') else {
            break word;
        };
        // iproute2 accepts `--option` as `-option`.
        let option = format!("-{}", option.strip_prefix('-').unwrap_or(option));
        // `-br`/`-brief` and `-r`/`-resolve` take no value though they prefix-match some that do.
        let no_value = ["-br", "-brief", "-r", "-resolve"].contains(&option.as_str());
        if option.len() > 1
            && !no_value
            && OPTIONS_WITH_VALUE.iter().any(|full| matches(&option, full))
        {
            words.next();
        }
    };
    // `r` is `route` (iproute2 tries `route` before `rule`).
    matches(object, "route") && words.next().is_some_and(|verb| matches(verb, "flush"))
}

/// A route delete request `ev` made by `ip route flush` is a flush: its cause says so.
pub(super) fn reclassify(ev: &mut Event) {
    if ev.cause == Cause::Request
        && ev.request.as_ref().is_some_and(|r| r.op == Op::RtmDelRoute)
        && ev
            .actor
            .as_ref()
            .is_some_and(|a| is_ip_route_flush(&a.argv))
    {
        ev.cause = Cause::Flush;
    }
}

#[cfg(test)]
mod tests {
    use super::is_ip_route_flush;

    fn argv(cmd: &str) -> Vec<String> {
        cmd.split(' ').map(String::from).collect()
    }

    #[test]
    fn ip_route_flush_in_its_spellings() {
        for cmd in [
            "ip route flush table 77",
            "/usr/sbin/ip -6 route flush dev eth0",
            "ip -n blue route flush table 77",
            "ip --netns blue -4 r f table main",
            "ip -batch /dev/null ro fl",
        ] {
            assert!(is_ip_route_flush(&argv(cmd)), "{cmd}");
        }
    }

    #[test]
    fn other_commands_are_not_flushes() {
        for cmd in [
            "ip route del 10.0.0.0/24",
            "ip rule flush",
            "ip -n route route del 10.0.0.0/8",
            "ip -batch -",
            "bird route flush",
            "ip",
            "",
        ] {
            assert!(!is_ip_route_flush(&argv(cmd)), "{cmd}");
        }
    }
}
