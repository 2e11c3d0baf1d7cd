//! The knowledge figures the answer is made of, read from MongoDB so that no
//! request ever waits long for it.
//!
//! One read at a time refreshes the figures when they are older than
//! `MULTIVAC_STATS_TTL_MS` (the read itself may take up to
//! `MULTIVAC_BACKEND_TIMEOUT_MS`). A request waits for it at most
//! [`ANSWER_WAIT`], and only while MongoDB is believed reachable; otherwise
//! it answers at once from the last figures, marked stale with their age, or
//! says that none are known, while the read goes on in the background. So a
//! MongoDB outage costs `GET /multivac` at most [`ANSWER_WAIT`], once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;

use crate::store::{Knowledge, Store};

/// The longest a request waits for MongoDB's figures (a healthy read takes
/// milliseconds); a slower read finishes in the background for later
/// requests.
pub(crate) const ANSWER_WAIT: Duration = Duration::from_millis(500);

/// What the last reads said.
#[derive(Clone, Copy, Debug, Default)]
struct Snapshot {
    /// The last figures read, and when.
    known: Option<(Instant, Knowledge)>,
    /// Whether the last read succeeded; `None` before the first.
    reachable: Option<bool>,
}

/// The figures as a request gets them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reading {
    /// Read within the last `ttl + timeout`: what a healthy MongoDB gives.
    Fresh(Knowledge),
    /// The last figures known, older than that: MongoDB did not answer since.
    Stale { knowledge: Knowledge, age: Duration },
    /// MongoDB never answered since the start.
    Unknown,
}

/// Gauges the cache keeps current.
#[derive(Clone, Default)]
pub(crate) struct Gauges {
    pub(crate) mongodb_up: Gauge,
    pub(crate) concepts: Gauge,
}

/// The shared cache of the knowledge figures.
pub(crate) struct KnowledgeCache {
    store: Arc<Store>,
    ttl: Duration,
    timeout: Duration,
    snapshot: watch::Sender<Snapshot>,
    refreshing: AtomicBool,
    gauges: Gauges,
}

impl KnowledgeCache {
    /// A cache over `store`: figures are reused for `ttl`, and one read may
    /// take `timeout`.
    pub(crate) fn new(store: Arc<Store>, ttl: Duration, timeout: Duration, gauges: Gauges) -> Self {
        KnowledgeCache {
            store,
            ttl,
            timeout,
            snapshot: watch::Sender::new(Snapshot::default()),
            refreshing: AtomicBool::new(false),
            gauges,
        }
    }

    /// The figures: fresh ones (waiting for one read if MongoDB is believed
    /// up), else the last known marked stale, else unknown.
    pub(crate) async fn read(self: &Arc<Self>) -> Reading {
        let snapshot = *self.snapshot.borrow();
        if let Some((at, knowledge)) = snapshot.known
            && at.elapsed() < self.ttl
        {
            return Reading::Fresh(knowledge);
        }
        let mut changed = self.snapshot.subscribe();
        self.refresh();
        if snapshot.reachable != Some(false) {
            let wait = self.timeout.min(ANSWER_WAIT);
            let _ = tokio::time::timeout(wait, changed.changed()).await;
        }
        self.current()
    }

    /// The figures as they are now, without reading MongoDB.
    pub(crate) fn current(&self) -> Reading {
        match self.snapshot.borrow().known {
            Some((at, knowledge)) if at.elapsed() < self.ttl + self.timeout => {
                Reading::Fresh(knowledge)
            }
            Some((at, knowledge)) => Reading::Stale {
                knowledge,
                age: at.elapsed(),
            },
            None => Reading::Unknown,
        }
    }

    /// Whether the last read succeeded (`None` before the first one).
    pub(crate) fn reachable(&self) -> Option<bool> {
        self.snapshot.borrow().reachable
    }

    /// Age of the last figures read, if any.
    pub(crate) fn age(&self) -> Option<Duration> {
        self.snapshot.borrow().known.map(|(at, _)| at.elapsed())
    }

    /// Starts one read in the background unless one is running already.
    pub(crate) fn refresh(self: &Arc<Self>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let cache = self.clone();
        tokio::spawn(async move {
            let read = tokio::time::timeout(cache.timeout, cache.store.knowledge()).await;
            let result = match read {
                Ok(Ok(knowledge)) => Ok(knowledge),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("MongoDB did not answer within {:?}", cache.timeout)),
            };
            let was = cache.snapshot.borrow().reachable;
            match &result {
                Ok(knowledge) => {
                    cache.gauges.mongodb_up.set(1);
                    cache.gauges.concepts.set(knowledge.concepts as i64);
                    if was == Some(false) {
                        tracing::info!("MongoDB answers again; the answer is fresh");
                    }
                }
                Err(error) => {
                    cache.gauges.mongodb_up.set(0);
                    if was != Some(false) {
                        tracing::warn!(%error, "MongoDB does not answer: GET /multivac answers from the last figures known, marked stale; intake goes on");
                    }
                }
            }
            cache.snapshot.send_modify(|s| {
                s.reachable = Some(result.is_ok());
                if let Ok(knowledge) = result {
                    s.known = Some((Instant::now(), knowledge));
                }
            });
            cache.refreshing.store(false, Ordering::Release);
        });
    }
}
