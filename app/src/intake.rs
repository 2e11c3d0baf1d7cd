//! The backlog bound of `POST /multivac/data` (`MULTIVAC_MAX_BACKLOG`).
//!
//! Reading the backlog from Redis on every POST would double the server's
//! Redis round trips at full rate, so one task reads it every
//! [`REFRESH`] and every POST compares against that reading plus what this
//! server accepted since the reading started. The check and the count are
//! one atomic step, so with one server the backlog never passes the bound;
//! with N servers it passes it by at most what the other N-1 accept in one
//! refresh period plus one Redis read (see `docs/architecture.md`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multivac_contract::{Backlog, Shutdown};
use prometheus_client::metrics::gauge::Gauge;

use crate::queue::Queue;

/// How often the backlog is read while a bound is set.
pub(crate) const REFRESH: Duration = Duration::from_millis(200);

/// Why a POST may not queue.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Full {
    pub(crate) backlog: u64,
    pub(crate) max: u64,
}

/// The bound, the last reading and the count since.
pub(crate) struct BacklogGate {
    max: u64,
    reading: Mutex<Option<(Instant, Backlog)>>,
    accepted_since: AtomicU64,
}

/// A place in the backlog, taken before XADD: give it back with
/// [`Reservation::cancel`] if nothing was queued.
pub(crate) struct Reservation<'a>(Option<&'a AtomicU64>);

impl Reservation<'_> {
    /// Nothing was queued after all.
    pub(crate) fn cancel(self) {
        if let Some(count) = self.0 {
            count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl BacklogGate {
    /// A gate for `max` entries; 0 lets everything through.
    pub(crate) fn new(max: u64) -> Self {
        BacklogGate {
            max,
            reading: Mutex::new(None),
            accepted_since: AtomicU64::new(0),
        }
    }

    /// Whether a bound is set (then [`BacklogGate::run`] must run).
    pub(crate) fn enabled(&self) -> bool {
        self.max > 0
    }

    /// Takes a place for one more entry, or says the backlog is full. Before
    /// the first reading nothing is refused (Redis' maxmemory still is).
    pub(crate) fn reserve(&self) -> Result<Reservation<'_>, Full> {
        if !self.enabled() {
            return Ok(Reservation(None));
        }
        let Some((_, backlog)) = *self.reading.lock().expect("backlog reading lock") else {
            return Ok(Reservation(None));
        };
        let before = self.accepted_since.fetch_add(1, Ordering::AcqRel);
        let estimate = backlog.total().saturating_add(before);
        if estimate >= self.max {
            self.accepted_since.fetch_sub(1, Ordering::AcqRel);
            return Err(Full {
                backlog: estimate,
                max: self.max,
            });
        }
        Ok(Reservation(Some(&self.accepted_since)))
    }

    /// The last reading, for /metrics.
    pub(crate) fn last(&self) -> Option<Backlog> {
        self.reading
            .lock()
            .expect("backlog reading lock")
            .map(|(_, b)| b)
    }

    pub(crate) fn record(&self, backlog: Backlog, counted_from: u64) {
        *self.reading.lock().expect("backlog reading lock") = Some((Instant::now(), backlog));
        // What was accepted while the read ran may or may not be in it:
        // keep counting it (an overestimate), drop only what came before
        // (saturating: a place given back meanwhile was counted before).
        let _ = self
            .accepted_since
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(counted_from))
            });
    }

    /// Reads the backlog every [`REFRESH`] until `shutdown`, also setting the
    /// `backlog` and `pending` gauges.
    pub(crate) async fn run(
        &self,
        queue: Queue,
        backlog_gauge: Gauge,
        pending_gauge: Gauge,
        mut shutdown: Shutdown,
    ) {
        let mut failing = false;
        loop {
            let counted_from = self.accepted_since.load(Ordering::Acquire);
            match queue.backlog().await {
                Ok(backlog) => {
                    self.record(backlog, counted_from);
                    backlog_gauge.set(backlog.total() as i64);
                    pending_gauge.set(backlog.pending as i64);
                    if failing {
                        tracing::info!("reading the backlog works again");
                    }
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot read the backlog; POST keeps the last reading for MULTIVAC_MAX_BACKLOG");
                    }
                    failing = true;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(REFRESH) => {}
                _ = shutdown.wait() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backlog(total: u64) -> Backlog {
        Backlog {
            undelivered: total,
            pending: 0,
        }
    }

    #[test]
    fn no_bound_or_no_reading_refuses_nothing() {
        let off = BacklogGate::new(0);
        off.record(backlog(1_000_000), 0);
        assert!(off.reserve().is_ok());
        let unread = BacklogGate::new(10);
        for _ in 0..100 {
            assert!(unread.reserve().is_ok());
        }
    }

    #[test]
    fn the_bound_counts_what_was_accepted_since_the_reading() {
        let gate = BacklogGate::new(10);
        gate.record(backlog(7), 0);
        // 7 queued: 3 more fit, the 4th does not.
        let reservations: Vec<_> = (0..3).map(|_| gate.reserve().unwrap()).collect();
        assert_eq!(
            gate.reserve().err(),
            Some(Full {
                backlog: 10,
                max: 10
            })
        );
        // A POST that failed to queue gives its place back.
        reservations.into_iter().next().unwrap().cancel();
        assert!(gate.reserve().is_ok());
        assert!(gate.reserve().is_err());
        // A new reading (workers drained 5) started after those 3: it
        // replaces them.
        let counted = gate.accepted_since.load(Ordering::Acquire);
        gate.record(backlog(5), counted);
        assert_eq!(gate.accepted_since.load(Ordering::Acquire), 0);
        for _ in 0..5 {
            gate.reserve().unwrap();
        }
        assert!(gate.reserve().is_err());
    }

    #[test]
    fn entries_accepted_during_a_read_stay_counted() {
        let gate = BacklogGate::new(10);
        gate.record(backlog(0), 0);
        gate.reserve().unwrap(); // before the read started
        let counted_from = gate.accepted_since.load(Ordering::Acquire);
        gate.reserve().unwrap(); // while it ran
        gate.record(backlog(1), counted_from);
        assert_eq!(gate.accepted_since.load(Ordering::Acquire), 1);
    }
}
