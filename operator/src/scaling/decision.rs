//! The scaling decision: a pure function of the backlog, the MultiVac's
//! `spec.workers` bounds and the recent recommendations, so it can be tested
//! exhaustively without Redis or Kubernetes.
//!
//! The rule (the same shape as the HPA's `behavior`, with faster defaults):
//! - recommendation = clamp(ceil(backlog / targetBacklogPerWorker), min, max);
//! - scale up at once to the recommendation (no activation threshold: one
//!   waiting entry wakes a MultiVac that sits at zero);
//! - scale down only to the highest recommendation seen during the last
//!   `scaleDownStabilizationSeconds`, so a short dip never removes a worker
//!   that the next burst would need again (no flapping);
//! - the replica count that was in force when observation started (or while
//!   the backlog could not be read) counts as a recommendation, so a fresh
//!   operator or a Redis outage never scales down before a whole window of
//!   real observations.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The part of `spec.workers` the decision needs, already validated by the
/// CRD schema (min <= max, non-negative); `target_backlog_per_worker` of 0 is
/// treated as 1 rather than dividing by zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    pub(crate) min_replicas: u32,
    pub(crate) max_replicas: u32,
    pub(crate) target_backlog_per_worker: u64,
    pub(crate) stabilization: Duration,
}

/// Why the desired count is what it is; named in the `ScaledUp`/`ScaledDown`
/// Event's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The backlog needs more workers than are running: applied at once.
    ScaleUp,
    /// The backlog needs fewer workers for the whole stabilization window.
    ScaleDown,
    /// Fewer workers would do now, but a higher recommendation was seen
    /// within the stabilization window, so the count is held.
    Stabilizing,
    /// Outside `[min, max]` after a spec change: brought back inside.
    Bounds,
    /// Nothing to change.
    Steady,
}

/// The outcome of one poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    /// The replica count the worker Deployment should have.
    pub(crate) desired: u32,
    /// What the backlog alone asks for (clamped), before stabilization.
    pub(crate) recommendation: u32,
    pub(crate) reason: Reason,
}

/// Recommendations seen during the stabilization window, kept as a monotone
/// deque (a sliding-window maximum): an entry that is older and not higher
/// than a newer one can never be the maximum again, so it is dropped. The
/// deque therefore stays short (at most one entry per poll in the window,
/// usually one or two).
#[derive(Debug, Clone, Default)]
pub(crate) struct History {
    entries: VecDeque<(Instant, u32)>,
}

impl History {
    /// Records `replicas` as a recommendation seen at `now`.
    pub(crate) fn record(&mut self, now: Instant, replicas: u32) {
        while let Some(&(_, r)) = self.entries.back() {
            if r <= replicas {
                self.entries.pop_back();
            } else {
                break;
            }
        }
        self.entries.push_back((now, replicas));
    }

    /// Drops what is older than `window` at `now`: an entry recorded at `t`
    /// holds replicas during `[t, t + window)`.
    fn expire(&mut self, now: Instant, window: Duration) {
        while let Some(&(t, _)) = self.entries.front() {
            if now.saturating_duration_since(t) >= window {
                self.entries.pop_front();
            } else {
                break;
            }
        }
    }

    /// The highest recommendation still in the window (after `expire`).
    fn max(&self) -> Option<u32> {
        self.entries.front().map(|&(_, r)| r)
    }

    /// True before anything was recorded: the first poll of a MultiVac.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// clamp(ceil(backlog / target), min, max).
pub fn recommend(backlog: u64, params: &Params) -> u32 {
    let target = params.target_backlog_per_worker.max(1);
    let raw = backlog.div_ceil(target);
    let raw = u32::try_from(raw).unwrap_or(u32::MAX);
    clamp(raw, params)
}

fn clamp(n: u32, params: &Params) -> u32 {
    // `max(min)` first so an inverted pair (rejected by the schema, but cheap
    // to survive) never panics in `u32::clamp`.
    n.min(params.max_replicas.max(params.min_replicas))
        .max(params.min_replicas)
}

/// Decides the worker replica count for one poll that read `backlog`, while
/// the Deployment has `current` replicas. Updates `history`.
pub fn decide(
    now: Instant,
    backlog: u64,
    params: &Params,
    current: u32,
    history: &mut History,
) -> Decision {
    if history.is_empty() {
        // What is running now was chosen for a reason we did not see: hold
        // it for a whole window before scaling below it.
        history.record(now, current);
    }
    let recommendation = recommend(backlog, params);
    history.expire(now, params.stabilization);
    history.record(now, recommendation);
    let window_max = history.max().unwrap_or(recommendation);

    let (desired, reason) = if recommendation > current {
        (recommendation, Reason::ScaleUp)
    } else {
        // Never scale up from a stale recommendation: only hold or go down.
        let held = current.min(window_max);
        let reason = if held == current {
            if recommendation < current {
                Reason::Stabilizing
            } else {
                Reason::Steady
            }
        } else {
            Reason::ScaleDown
        };
        (held, reason)
    };
    let bounded = clamp(desired, params);
    let reason = if bounded != desired {
        Reason::Bounds
    } else {
        reason
    };
    Decision {
        desired: bounded,
        recommendation,
        reason,
    }
}

/// The backlog could not be read at `now`: keep `current` and count it as a
/// recommendation, so the window restarts from the outage and the MultiVac
/// does not scale down the moment Redis answers again.
pub fn hold(now: Instant, params: &Params, current: u32, history: &mut History) {
    history.expire(now, params.stabilization);
    history.record(now, current);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(min: u32, max: u32, target: u64, window_s: u64) -> Params {
        Params {
            min_replicas: min,
            max_replicas: max,
            target_backlog_per_worker: target,
            stabilization: Duration::from_secs(window_s),
        }
    }

    #[test]
    fn recommendation_table() {
        let p = params(1, 10, 100, 60);
        let zero = params(0, 10, 100, 60);
        let cases = [
            (&p, 0, 1),
            (&p, 1, 1),
            (&p, 100, 1),
            (&p, 101, 2),
            (&p, 1000, 10),
            (&p, 1001, 10),
            (&p, u64::MAX, 10),
            (&zero, 0, 0),
            (&zero, 1, 1),
            (&zero, 250, 3),
            (&params(2, 5, 100, 60), 0, 2),
            (&params(0, 10, 0, 60), 7, 7),
        ];
        for (p, backlog, want) in cases {
            assert_eq!(recommend(backlog, p), want, "backlog {backlog} with {p:?}");
        }
    }

    /// Replays (seconds, backlog) polls and returns the desired count after
    /// each, feeding each decision back as the current count.
    fn replay(p: &Params, start: u32, polls: &[(u64, u64)]) -> Vec<(u32, Reason)> {
        let t0 = Instant::now();
        let mut h = History::default();
        let mut current = start;
        polls
            .iter()
            .map(|&(s, backlog)| {
                let d = decide(t0 + Duration::from_secs(s), backlog, p, current, &mut h);
                current = d.desired;
                (d.desired, d.reason)
            })
            .collect()
    }

    #[test]
    fn decision_table() {
        use Reason::*;
        let p = params(1, 10, 100, 10);
        // A burst at 5 s scales up at once; the drain holds the count during
        // [5 s, 15 s), then goes down in one step.
        let got = replay(
            &p,
            1,
            &[(0, 0), (5, 1000), (6, 0), (10, 0), (14, 0), (15, 0)],
        );
        assert_eq!(
            got,
            vec![
                (1, Steady),
                (10, ScaleUp),
                (10, Stabilizing),
                (10, Stabilizing),
                (10, Stabilizing),
                (1, ScaleDown)
            ]
        );

        // Scale to zero only after a whole window of empty polls, wake on one.
        let z = params(0, 10, 100, 10);
        let got = replay(&z, 1, &[(0, 0), (5, 0), (9, 0), (10, 0), (11, 1)]);
        assert_eq!(
            got,
            vec![
                (1, Stabilizing),
                (1, Stabilizing),
                (1, Stabilizing),
                (0, ScaleDown),
                (1, ScaleUp)
            ]
        );

        // A step down goes to the highest recommendation still in the window.
        let got = replay(&p, 1, &[(0, 800), (4, 300), (8, 0), (12, 0), (14, 0)]);
        assert_eq!(
            got,
            vec![
                (8, ScaleUp),
                (8, Stabilizing),
                (8, Stabilizing),
                (3, ScaleDown),
                (1, ScaleDown)
            ]
        );

        // A spec change that lowers max applies at once.
        let mut h = History::default();
        let t0 = Instant::now();
        let d = decide(t0, 0, &params(1, 3, 100, 60), 8, &mut h);
        assert_eq!((d.desired, d.reason), (3, Bounds));
        // ...and raising min too.
        let d = decide(t0, 0, &params(4, 6, 100, 60), 1, &mut h);
        assert_eq!(d.desired, 4);
    }

    #[test]
    fn outage_restarts_the_window() {
        let p = params(1, 10, 100, 10);
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut h = History::default();
        assert_eq!(decide(at(0), 500, &p, 1, &mut h).desired, 5);
        // Redis down from 1 s to 20 s: the count is held while unreadable.
        for s in 1..=20 {
            hold(at(s), &p, 5, &mut h);
        }
        // Back with an empty stream: still 5 for a window after the outage.
        assert_eq!(decide(at(21), 0, &p, 5, &mut h).desired, 5);
        assert_eq!(decide(at(29), 0, &p, 5, &mut h).desired, 5);
        assert_eq!(decide(at(30), 0, &p, 5, &mut h).desired, 1);
    }

    #[test]
    fn history_stays_short() {
        let p = params(0, 100, 1, 60);
        let t0 = Instant::now();
        let mut h = History::default();
        for s in 0..1000u64 {
            // Rising backlog: every new entry supersedes the older ones.
            decide(t0 + Duration::from_secs(s), s % 100, &p, 100, &mut h);
        }
        assert!(h.len() <= 61, "history grew to {}", h.len());
    }

    fn arb_params() -> impl Strategy<Value = Params> {
        (0u32..20, 0u32..30, 1u64..500, 0u64..120)
            .prop_map(|(min, span, target, w)| params(min, min + span, target, w))
    }

    /// Polls: (seconds since the previous poll, backlog).
    fn arb_polls() -> impl Strategy<Value = Vec<(u64, u64)>> {
        prop::collection::vec((0u64..30, 0u64..5000), 1..60)
    }

    proptest! {
        #[test]
        fn never_outside_bounds(p in arb_params(), start in 0u32..60, polls in arb_polls()) {
            let t0 = Instant::now();
            let mut h = History::default();
            let (mut now, mut current) = (t0, start);
            for (dt, backlog) in polls {
                now += Duration::from_secs(dt);
                let d = decide(now, backlog, &p, current, &mut h);
                prop_assert!(d.desired >= p.min_replicas && d.desired <= p.max_replicas,
                    "{} outside [{}, {}]", d.desired, p.min_replicas, p.max_replicas);
                current = d.desired;
            }
        }

        #[test]
        fn monotone_in_backlog(p in arb_params(), start in 0u32..60, polls in arb_polls(),
                               a in 0u64..10_000, b in 0u64..10_000) {
            // Same history, same current count: more backlog never asks for
            // fewer workers.
            let t0 = Instant::now();
            let mut h = History::default();
            let (mut now, mut current) = (t0, start);
            for (dt, backlog) in polls {
                now += Duration::from_secs(dt);
                current = decide(now, backlog, &p, current, &mut h).desired;
            }
            now += Duration::from_secs(1);
            let (lo, hi) = (a.min(b), a.max(b));
            let d_lo = decide(now, lo, &p, current, &mut h.clone()).desired;
            let d_hi = decide(now, hi, &p, current, &mut h.clone()).desired;
            prop_assert!(d_lo <= d_hi, "backlog {lo} -> {d_lo} but {hi} -> {d_hi}");
        }

        #[test]
        fn stabilization_holds_for_the_whole_window(
            p in arb_params(), polls in arb_polls(), burst in 1u64..100_000,
        ) {
            // After the last poll that recommended `r`, the count stays >= r
            // for every poll less than a window later, whatever the backlog.
            let t0 = Instant::now();
            let mut h = History::default();
            let burst_rec = recommend(burst, &p);
            let mut current = decide(t0, burst, &p, p.min_replicas, &mut h).desired;
            prop_assert_eq!(current, burst_rec);
            let mut elapsed = 0u64;
            for (dt, backlog) in polls {
                elapsed += dt;
                let now = t0 + Duration::from_secs(elapsed);
                let d = decide(now, backlog, &p, current, &mut h);
                if Duration::from_secs(elapsed) < p.stabilization {
                    prop_assert!(d.desired >= burst_rec,
                        "dropped to {} at {}s inside a {:?} window (burst asked {})",
                        d.desired, elapsed, p.stabilization, burst_rec);
                }
                current = d.desired;
            }
        }

        #[test]
        fn wakes_from_zero_on_one_entry(max in 1u32..50, target in 1u64..10_000,
                                        window in 0u64..600, idle in 0u64..1000) {
            let p = params(0, max, target, window);
            let t0 = Instant::now();
            let mut h = History::default();
            // Sitting at zero for a while, then a single entry arrives.
            decide(t0, 0, &p, 0, &mut h);
            let d = decide(t0 + Duration::from_secs(idle), 1, &p, 0, &mut h);
            prop_assert_eq!(d.desired, 1);
            prop_assert_eq!(d.reason, Reason::ScaleUp);
        }

        #[test]
        fn scales_to_zero_only_after_a_full_empty_window(
            window in 1u64..300, polls in prop::collection::vec(0u64..30, 1..40),
        ) {
            let p = params(0, 10, 100, window);
            let t0 = Instant::now();
            let mut h = History::default();
            let mut current = decide(t0, 1, &p, 0, &mut h).desired;
            prop_assert_eq!(current, 1);
            let mut elapsed = 0;
            for dt in polls {
                elapsed += dt;
                current = decide(t0 + Duration::from_secs(elapsed), 0, &p, current, &mut h).desired;
                prop_assert_eq!(current == 0, elapsed >= window,
                    "at {}s with a {}s window: {} replicas", elapsed, window, current);
            }
        }
    }
}
