//! Loss accounting: every record the capture could not keep is counted once, under its own
//! cause, and only lost removals count as lost events.
//!
//! A smallest ring (64K) that is only drained on the tracer's 10 ms ticks, and a burst of route
//! deletes the kernel refuses (ESRCH: the routes are not there), each its own request: the ring
//! fills, and requests, their acks and the sender's process details are lost alike. A lost
//! request is a lost event; a lost ack only leaves its request's outcome `unknown`, and lost
//! process details only send the actor to /proc. So the events shown plus the events counted
//! lost are exactly the requests sent: before causes were kept apart, a lost ack or task record
//! counted as a lost event too (and a task record twice), and the sum came out larger.
//!
//! The counters are the whole host's: a removal made elsewhere during the burst and lost would
//! show here too (rerun alone before reading a failure as routeguard's).

use std::process::Command;

use routeguard_tests::*;

#[test]
fn every_lost_record_is_counted_once_under_its_cause() {
    let ns = Netns::new();
    ns.add_test_link("d0");
    for deletes in [5_000u64, 20_000, 60_000] {
        let tracer = Tracer::start(&ns, &["--ring-size", "64K", "--wakeup", "1M"]);
        let lines: String = (0..deletes)
            .map(|i| {
                // Distinct valid prefixes for every i below 65,536 (an octet over 255 would be
                // a parse error, which ends `ip -batch` even with -force).
                format!(
                    "route del 10.{}.{}.0/24 table 4077\n",
                    (i >> 8) & 0xff,
                    i & 0xff
                )
            })
            .collect();
        // -force: carry on past each refusal (every one is refused).
        let ran = run_with_input(
            Command::new("ip").args(["-n", ns.name(), "-force", "-batch", "-"]),
            &lines,
        );
        let pid = ran.pid;
        std::thread::sleep(QUIET_PERIOD);
        let (events, stderr, (shown, lost)) = tracer.stop_lossy();
        let mine = events.iter().filter(|e| by_pid(e, pid)).count() as u64;
        let others = shown - mine;
        eprintln!(
            "{deletes} refused deletes: {mine} events of ip's ({others} others), {lost} lost; \
             stderr:\n{stderr}"
        );
        if lost == 0 {
            eprintln!("a 64K ring lost nothing of {deletes} requests here; a larger burst");
            continue;
        }
        assert!(
            events
                .iter()
                .filter(|e| by_pid(e, pid))
                .all(|e| at(e, "/kind") == "route"
                    && matches!(at(e, "/outcome").as_str(), Some("failed" | "unknown"))),
            "every event of ip's is a refused (or unanswered) route delete"
        );
        assert_eq!(
            mine + lost,
            deletes,
            "events shown ({mine}) + events counted lost ({lost}) must be the requests sent \
             ({deletes}): a lost ack or process-detail record is not a lost event; stderr:\n{stderr}"
        );
        return;
    }
    eprintln!("skipping: no burst overflowed the 64K ring here; nothing to count");
}
