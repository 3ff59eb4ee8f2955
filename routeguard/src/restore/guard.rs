//! The flap guard: an object removed again and again by the same actor gets restores with
//! exponential back-off, and after `max_attempts` within `window` none at all for `suspend` —
//! two programs that each insist on their own view must not fight forever (the question
//! Tailscale's reviewers asked of its own rule restorer, tailscale/tailscale#2468).

use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
    time::{Duration, Instant},
};

use serde::Deserialize;

/// `[restore]` settings of the flap guard (and the dry-run switch, and how many missing objects
/// are tracked).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// Log what would be restored, change nothing.
    pub dry_run: bool,
    /// Restores of one object after removals by one actor allowed within `window`.
    pub max_attempts: u32,
    #[serde(deserialize_with = "duration")]
    pub window: Duration,
    /// Delay before the second restore within the window; doubled for each further one.
    #[serde(deserialize_with = "duration")]
    pub backoff: Duration,
    #[serde(deserialize_with = "duration")]
    pub backoff_max: Duration,
    /// How long restores of a flapping object stay suspended.
    #[serde(deserialize_with = "duration")]
    pub suspend: Duration,
    /// How long a re-add the kernel refuses for a passing reason (the link is down) is retried.
    #[serde(deserialize_with = "duration")]
    pub retry_for: Duration,
    /// Protected objects tracked as missing at most; further ones are counted, not tracked.
    pub max_missing: u32,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            dry_run: false,
            max_attempts: 5,
            window: Duration::from_secs(60),
            backoff: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            suspend: Duration::from_secs(600),
            retry_for: Duration::from_secs(600),
            max_missing: 10_000,
        }
    }
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    crate::daemon::config::parse_duration(&s).map_err(serde::de::Error::custom)
}

/// What to do about one more removal of a protected object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Restore after this delay (zero for the first removal in the window); `attempt` counts
    /// from 1.
    Restore { delay: Duration, attempt: u32 },
    /// This removal makes too many: stop restoring, say so once.
    Suspend { attempts: u32 },
    /// Already suspended: do nothing, say nothing more.
    Suspended,
}

#[derive(Default)]
struct Track {
    attempts: VecDeque<Instant>,
    suspended_until: Option<Instant>,
}

/// Restore history per key: (namespace, object, actor).
pub struct FlapGuard<K> {
    config: GuardConfig,
    tracks: HashMap<K, Track>,
}

impl<K: Eq + Hash> FlapGuard<K> {
    pub fn new(config: GuardConfig) -> Self {
        Self {
            config,
            tracks: HashMap::new(),
        }
    }

    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    /// New settings; the histories stay (a suspension keeps the end it was given).
    pub fn set_config(&mut self, config: GuardConfig) {
        self.config = config;
    }

    /// Keeps only the histories whose key `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.tracks.retain(|k, _| keep(k));
    }

    /// Histories held.
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// The verdict on a removal of the object `key` by its actor, at `now`.
    pub fn admit(&mut self, key: K, now: Instant) -> Verdict {
        let c = &self.config;
        let track = self.tracks.entry(key).or_default();
        if let Some(until) = track.suspended_until {
            if now < until {
                return Verdict::Suspended;
            }
            track.suspended_until = None;
            track.attempts.clear();
        }
        while track
            .attempts
            .front()
            .is_some_and(|t| now.duration_since(*t) >= c.window)
        {
            track.attempts.pop_front();
        }
        let before = track.attempts.len() as u32;
        if before >= c.max_attempts {
            track.suspended_until = Some(now + c.suspend);
            return Verdict::Suspend { attempts: before };
        }
        track.attempts.push_back(now);
        let delay = match before {
            0 => Duration::ZERO,
            n => c
                .backoff
                .saturating_mul(1 << (n - 1).min(20))
                .min(c.backoff_max),
        };
        Verdict::Restore {
            delay,
            attempt: before + 1,
        }
    }

    /// Forgets histories idle for longer than the window and suspension (bounded memory when
    /// many different objects come and go).
    pub fn prune(&mut self, now: Instant) {
        let keep = self.config.window.max(self.config.suspend);
        self.tracks.retain(|_, t| {
            t.suspended_until.is_some_and(|u| now < u)
                || t.attempts
                    .back()
                    .is_some_and(|a| now.duration_since(*a) < keep)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(max: u32) -> FlapGuard<&'static str> {
        FlapGuard::new(GuardConfig {
            max_attempts: max,
            window: Duration::from_secs(60),
            backoff: Duration::from_millis(100),
            backoff_max: Duration::from_millis(350),
            suspend: Duration::from_secs(600),
            ..GuardConfig::default()
        })
    }

    #[test]
    fn first_restore_is_immediate_then_backs_off_then_suspends_once() {
        let mut g = guard(4);
        let t = Instant::now();
        let delays: Vec<_> = (0..4)
            .map(|i| g.admit("o", t + Duration::from_secs(i)))
            .collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(
            delays,
            [
                Verdict::Restore {
                    delay: ms(0),
                    attempt: 1
                },
                Verdict::Restore {
                    delay: ms(100),
                    attempt: 2
                },
                Verdict::Restore {
                    delay: ms(200),
                    attempt: 3
                },
                Verdict::Restore {
                    delay: ms(350),
                    attempt: 4
                },
            ]
        );
        assert_eq!(
            g.admit("o", t + Duration::from_secs(5)),
            Verdict::Suspend { attempts: 4 }
        );
        assert_eq!(g.admit("o", t + Duration::from_secs(6)), Verdict::Suspended);
        // Another object (or actor) is not affected.
        assert_eq!(
            g.admit("other", t + Duration::from_secs(6)),
            Verdict::Restore {
                delay: ms(0),
                attempt: 1
            }
        );
        // After the suspension, a fresh start.
        assert_eq!(
            g.admit("o", t + Duration::from_secs(700)),
            Verdict::Restore {
                delay: ms(0),
                attempt: 1
            }
        );
    }

    #[test]
    fn removals_spread_wider_than_the_window_never_suspend() {
        let mut g = guard(2);
        let t = Instant::now();
        for i in 0..10 {
            let v = g.admit("o", t + Duration::from_secs(61 * i));
            assert!(
                matches!(v, Verdict::Restore { attempt: 1, .. }),
                "{i}: {v:?}"
            );
        }
    }

    #[test]
    fn prune_keeps_suspensions_and_recent_tracks() {
        let mut g = guard(1);
        let t = Instant::now();
        g.admit("a", t);
        g.admit("a", t); // suspends
        g.admit("b", t);
        g.prune(t + Duration::from_secs(300));
        assert_eq!(g.tracks.len(), 2);
        g.prune(t + Duration::from_secs(601));
        assert!(g.tracks.is_empty());
    }
}
