//! `multivac worker`: reads the stream in batches, learns each datum's
//! concepts, stores them in bulk writes bounded by count and bytes, and
//! acknowledges entries only once MongoDB holds them.
//!
//! Entries that were delivered before and not acknowledged (a previous run
//! of this pod died, or another worker did and they were reclaimed) are
//! suspects: they are tried one at a time, each read counting a delivery in
//! Redis, so one that keeps killing its worker reaches
//! `MULTIVAC_MAX_DELIVERIES` alone and is dead-lettered while the others are
//! learned.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use multivac_contract::{DEAD_LETTER, Probes, Readiness, Shutdown, encode_metrics, probe_routes};

use crate::Error;
use crate::config::{WorkerArgs, ms};
use crate::metrics::WorkerMetrics;
use crate::queue::{Consumer, Entry, Heartbeat, Payload, Queue};
use crate::store::{Learned, Rejected, Store};

/// How often a worker refreshes its heartbeat.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// How long a heartbeat lives: /zzz lists workers seen in this window.
const HEARTBEAT_TTL: Duration = Duration::from_secs(30);
/// Longest pause between retries of a failing backend.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Entries taken over from other consumers at once. They are tried one at
/// a time, so this bounds how long they wait in this worker.
const RECLAIM_COUNT: usize = 100;
/// The entry size a worker assumes before its first read: the server's
/// default `MULTIVAC_MAX_DATA_BYTES`.
const ASSUMED_ENTRY_BYTES: usize = 64 * 1024;

/// The worker's tuning, from [`WorkerArgs`].
#[derive(Clone, Debug)]
struct Settings {
    batch_size: usize,
    batch_bytes: usize,
    block: Duration,
    claim_idle: Duration,
    max_deliveries: u64,
    shutdown_timeout: Duration,
    backend_timeout: Duration,
}

impl Settings {
    /// From the command line.
    fn from_args(args: &WorkerArgs) -> Self {
        Settings {
            batch_size: args.batch_size.max(1),
            batch_bytes: args.batch_bytes.max(1),
            block: ms(args.block_ms),
            claim_idle: ms(args.claim_idle_ms),
            max_deliveries: args.max_deliveries.max(1),
            shutdown_timeout: ms(args.shutdown_timeout_ms),
            backend_timeout: ms(args.backend_timeout_ms),
        }
    }

    /// Reclaiming runs a few times per visibility timeout, so a dead
    /// worker's entries wait at most about 1.5 timeouts.
    fn claim_interval(&self) -> Duration {
        (self.claim_idle / 2).clamp(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// Entries to read next: about `batch_bytes` of data if the next entries
    /// are as large as the largest of the last read (Redis reads by count
    /// only, and a read's reply is held whole while its groups are stored),
    /// at most `batch_size`.
    fn read_count(&self, largest_seen: usize) -> usize {
        (self.batch_bytes / largest_seen.max(1)).clamp(1, self.batch_size)
    }
}

fn backoff(attempt: u32) -> Duration {
    (Duration::from_millis(100) * 2u32.saturating_pow(attempt.min(16))).min(MAX_BACKOFF)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Splits a read batch into consecutive groups of at most `max_bytes` data
/// bytes (a larger entry is a group of its own): learning and storing cost
/// memory in proportion to the bytes, so this bounds a worker's memory
/// whatever the size of the data.
fn by_bytes(entries: Vec<Entry>, max_bytes: usize) -> Vec<Vec<Entry>> {
    let mut groups: Vec<Vec<Entry>> = Vec::new();
    let mut bytes = 0;
    for entry in entries {
        let size = entry.size();
        match groups.last_mut() {
            Some(group) if bytes + size <= max_bytes => group.push(entry),
            _ => {
                bytes = 0;
                groups.push(vec![entry]);
            }
        }
        bytes += size;
    }
    groups
}

/// One worker: a consumer in the group plus the store.
struct Worker {
    queue: Queue,
    consumer: Consumer,
    store: Arc<Store>,
    settings: Settings,
    metrics: Arc<WorkerMetrics>,
    shutdown: Shutdown,
    stop_seen_at: Option<Instant>,
    /// The largest entry of the last read that returned any.
    largest_seen: usize,
}

/// What became of a batch.
enum Outcome {
    Done,
    /// Given up during shutdown; the entries stay pending for other workers.
    Abandoned,
}

impl Worker {
    fn new(
        queue: Queue,
        consumer: Consumer,
        store: Arc<Store>,
        settings: Settings,
        metrics: Arc<WorkerMetrics>,
        shutdown: Shutdown,
    ) -> Self {
        Worker {
            queue,
            consumer,
            store,
            settings,
            metrics,
            shutdown,
            stop_seen_at: None,
            largest_seen: ASSUMED_ENTRY_BYTES,
        }
    }

    /// True when a retry loop should stop: a stop was requested longer than
    /// the shutdown timeout ago.
    fn give_up(&mut self) -> bool {
        if !self.shutdown.is_triggered() {
            return false;
        }
        let since = *self.stop_seen_at.get_or_insert_with(Instant::now);
        since.elapsed() >= self.settings.shutdown_timeout
    }

    async fn pause(&mut self, attempt: u32) {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(backoff(attempt)) => {}
            // Wake up at once on a stop so the shutdown timeout is honoured.
            _ = shutdown.wait(), if !self.shutdown.is_triggered() => {}
        }
    }

    /// Runs until a stop is requested, then finishes the in-flight batch and
    /// returns. Backend failures are retried, never fatal.
    async fn run(mut self) {
        let mut attempt = 0;
        while !self.shutdown.is_triggered() {
            match self.queue.ensure_group().await {
                Ok(()) => break,
                Err(e) => {
                    self.metrics.queue_errors.inc();
                    tracing::warn!(error = %e, "cannot create the consumer group yet; retrying");
                    self.pause(attempt).await;
                    attempt += 1;
                }
            }
        }
        tracing::info!(consumer = self.consumer.name(), "worker started");

        // A previous run under this name may have left entries pending.
        let mut own_pending = true;
        let mut last_claim: Option<Instant> = None;
        let mut attempt = 0;
        while !self.shutdown.is_triggered() {
            let step = if own_pending {
                match self.consumer.next_own_pending().await {
                    Ok(Some((entry, deliveries))) => {
                        Ok(self.process_suspect(entry, deliveries).await)
                    }
                    Ok(None) => {
                        own_pending = false;
                        Ok(Outcome::Done)
                    }
                    Err(e) => Err(e),
                }
            } else if last_claim.is_none_or(|t| t.elapsed() >= self.settings.claim_interval()) {
                last_claim = Some(Instant::now());
                self.consumer
                    .reclaim(self.settings.claim_idle, RECLAIM_COUNT)
                    .await
                    .map(|claimed| {
                        if claimed > 0 {
                            self.metrics.reclaimed.inc_by(claimed as u64);
                            tracing::info!(
                                count = claimed,
                                "reclaimed entries left idle by other consumers"
                            );
                            // Try them, then claim again: more may be waiting.
                            own_pending = true;
                            last_claim = None;
                        }
                        Outcome::Done
                    })
            } else {
                let count = self.settings.read_count(self.largest_seen);
                match self.consumer.read_new(count, self.settings.block).await {
                    Ok(batch) => {
                        if let Some(largest) = batch.iter().map(Entry::size).max() {
                            self.largest_seen = largest;
                        }
                        Ok(self.process_new(batch).await)
                    }
                    Err(e) => Err(e),
                }
            };
            match step {
                Ok(Outcome::Done) => attempt = 0,
                Ok(Outcome::Abandoned) => break,
                Err(e) => {
                    self.metrics.queue_errors.inc();
                    tracing::warn!(error = %e, "reading the queue failed; retrying");
                    // A read (or claim) whose answer was lost may have
                    // delivered entries to this consumer all the same:
                    // look at its own pending entries first, rather than
                    // leave them for a reclaim a visibility timeout later.
                    own_pending = true;
                    self.pause(attempt).await;
                    attempt += 1;
                }
            }
        }
        match self.consumer.leave_group_if_idle().await {
            Ok(true) => tracing::debug!("left the consumer group"),
            Ok(false) => tracing::info!(
                "stopping with entries still pending; other workers will reclaim them"
            ),
            Err(e) => tracing::debug!(error = %e, "could not leave the consumer group"),
        }
        tracing::info!(consumer = self.consumer.name(), "worker stopped");
    }

    /// Entries delivered for the first time: malformed ones go to the
    /// dead letters, the data are learned in groups bounded by bytes.
    async fn process_new(&mut self, batch: Vec<Entry>) -> Outcome {
        let mut data = Vec::with_capacity(batch.len());
        for entry in batch {
            match entry.payload {
                Payload::Malformed { reason, raw } => {
                    if !self.dead_letter(&entry.id, &raw, &reason, 1).await {
                        return Outcome::Abandoned;
                    }
                }
                Payload::Datum(_) => data.push(entry),
            }
        }
        for group in by_bytes(data, self.settings.batch_bytes) {
            if matches!(self.store_group(group).await, Outcome::Abandoned) {
                return Outcome::Abandoned;
            }
        }
        Outcome::Done
    }

    /// An entry delivered `deliveries` times (this try included) without
    /// being acknowledged: dead-lettered past `MULTIVAC_MAX_DELIVERIES`,
    /// else tried alone.
    async fn process_suspect(&mut self, entry: Entry, deliveries: u64) -> Outcome {
        let text = match entry.payload {
            Payload::Malformed { reason, raw } => {
                return self
                    .dead_letter_or_abandon(&entry.id, &raw, &reason, deliveries)
                    .await;
            }
            Payload::Datum(text) => text,
        };
        // Dead-letter only while MongoDB answers: then the failures were the
        // entry's own (it killed its workers), not an outage's.
        if deliveries > self.settings.max_deliveries && self.store.ping().await.is_ok() {
            let reason = format!(
                "delivered {deliveries} times without being acknowledged (MULTIVAC_MAX_DELIVERIES)"
            );
            return self
                .dead_letter_or_abandon(&entry.id, text.as_bytes(), &reason, deliveries)
                .await;
        }
        let entry = Entry {
            id: entry.id,
            payload: Payload::Datum(text),
        };
        self.store_group(vec![entry]).await
    }

    async fn dead_letter_or_abandon(
        &mut self,
        id: &str,
        raw: &[u8],
        reason: &str,
        deliveries: u64,
    ) -> Outcome {
        if self.dead_letter(id, raw, reason, deliveries).await {
            Outcome::Done
        } else {
            Outcome::Abandoned
        }
    }

    /// Learns a group of data, stores it (retrying outages), dead-letters
    /// what MongoDB refuses for good and acknowledges the rest.
    #[tracing::instrument(
        name = "batch",
        skip_all,
        fields(size = group.len(), first = group.first().map(|entry| entry.id.as_str()))
    )]
    async fn store_group(&mut self, group: Vec<Entry>) -> Outcome {
        let start = Instant::now();
        let learned: Vec<Learned> = group
            .into_iter()
            .filter_map(|entry| match entry.payload {
                Payload::Datum(text) => Some(Learned::new(entry.id, text)),
                Payload::Malformed { .. } => None,
            })
            .collect();
        if learned.is_empty() {
            return Outcome::Done;
        }
        let ids: Vec<String> = learned.iter().map(|l| l.id.clone()).collect();

        let mut attempt = 0;
        let rejected: Vec<Rejected> = loop {
            let written = tokio::time::timeout(
                self.settings.backend_timeout,
                self.store.write_batch(&learned),
            )
            .await;
            let error = match written {
                Ok(Ok(rejected)) => break rejected,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!(
                    "MongoDB did not answer within {:?}",
                    self.settings.backend_timeout
                ),
            };
            self.metrics.store_errors.inc();
            tracing::warn!(%error, entries = ids.len(), attempt, "storing a batch failed; retrying without acknowledging");
            if self.give_up() {
                tracing::warn!(
                    entries = ids.len(),
                    "stopping with the batch unstored; other workers will reclaim it"
                );
                return Outcome::Abandoned;
            }
            self.pause(attempt).await;
            attempt += 1;
            // Keep the entries ours while we are alive and retrying.
            if let Err(e) = self.consumer.touch(&ids).await {
                tracing::debug!(error = %e, "could not refresh the entries' idle time");
            }
        };

        // What MongoDB holds is acknowledged first: at Redis' maxmemory
        // acknowledging frees memory, while dead-lettering needs some.
        let stored: Vec<String> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| rejected.binary_search_by_key(i, |r| r.index).is_err())
            .map(|(_, id)| id.clone())
            .collect();
        let mut attempt = 0;
        while let Err(e) = self.consumer.ack(&stored).await {
            self.metrics.queue_errors.inc();
            tracing::warn!(error = %e, entries = stored.len(), "acknowledging a stored batch failed; retrying");
            if self.give_up() {
                // Stored but unacknowledged: a redelivery is harmless.
                return Outcome::Abandoned;
            }
            self.pause(attempt).await;
            attempt += 1;
        }
        self.metrics.processed.inc_by(stored.len() as u64);
        for refused in &rejected {
            let datum = &learned[refused.index];
            self.metrics.store_rejections.inc();
            if !self
                .dead_letter(&datum.id, datum.data.as_bytes(), &refused.reason, 1)
                .await
            {
                return Outcome::Abandoned;
            }
        }
        self.metrics.batches.inc();
        self.metrics
            .batch_duration
            .observe(start.elapsed().as_secs_f64());
        tracing::debug!(entries = ids.len(), elapsed = ?start.elapsed(), "batch learned");
        Outcome::Done
    }

    /// Moves an entry to the dead letters, retrying Redis; false when it
    /// gave up (shutdown), the entry then stays pending.
    async fn dead_letter(&mut self, id: &str, raw: &[u8], reason: &str, deliveries: u64) -> bool {
        let mut attempt = 0;
        loop {
            match self.consumer.dead_letter(id, raw, reason, deliveries).await {
                Ok(()) => {
                    self.metrics.dead_lettered.inc();
                    tracing::warn!(id, reason, "moved an entry to {DEAD_LETTER}");
                    return true;
                }
                Err(e) => {
                    self.metrics.queue_errors.inc();
                    tracing::warn!(error = %e, id, "dead-lettering failed; retrying");
                    if self.give_up() {
                        return false;
                    }
                    self.pause(attempt).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// Refreshes this worker's heartbeat until stopped.
async fn heartbeat(
    queue: Queue,
    consumer: String,
    metrics: Arc<WorkerMetrics>,
    mut shutdown: Shutdown,
) {
    let started_at = unix_now();
    loop {
        let beat = Heartbeat {
            consumer: consumer.clone(),
            started_at,
            last_seen: unix_now(),
            processed: metrics.processed.get(),
        };
        if let Err(e) = queue.heartbeat(&beat, HEARTBEAT_TTL).await {
            tracing::debug!(error = %e, "heartbeat failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT_INTERVAL) => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// What the worker's probe server answers from.
struct Probe {
    queue: Queue,
    store: Arc<Store>,
    metrics: Arc<WorkerMetrics>,
}

impl Probes for Probe {
    /// A worker needs both stores: it is ready when Redis and MongoDB answer.
    async fn readiness(&self) -> Readiness {
        let (redis, mongo) = tokio::join!(self.queue.ping(), self.store.ping());
        Readiness::default()
            .check("redis", redis)
            .check("mongodb", mongo)
    }

    async fn metrics(&self) -> String {
        if let Ok(backlog) = self.queue.backlog().await {
            self.metrics.backlog.set(backlog.total() as i64);
        }
        encode_metrics(&self.metrics.registry)
    }
}

/// `multivac worker`: the worker loop, its heartbeat and its probe server.
/// Returns after a stop request once the in-flight batch is finished.
pub(crate) async fn run(args: WorkerArgs, shutdown: Shutdown) -> Result<(), Error> {
    let settings = Settings::from_args(&args);
    let name = args.consumer();
    let redis_ca = args.common.redis_ca()?;
    let queue = Queue::connect_with_ca(
        &args.common.redis_url,
        redis_ca.as_deref(),
        settings.backend_timeout,
    )?;
    let consumer = Consumer::connect_with_ca(
        &args.common.redis_url,
        redis_ca.as_deref(),
        &name,
        settings.backend_timeout,
        settings.block,
    )?;
    let store = Arc::new(
        Store::connect_with_ca(
            &args.common.mongodb_uri,
            &args.common.mongodb_database,
            args.common.mongodb_ca()?,
            settings.backend_timeout,
        )
        .await?,
    );
    let metrics = Arc::new(WorkerMetrics::default());
    tracing::info!(
        consumer = %name,
        redis = queue.redacted_url(),
        mongodb = store.redacted_uri(),
        database = %args.common.mongodb_database,
        batch_size = settings.batch_size,
        batch_bytes = settings.batch_bytes,
        "starting worker"
    );
    tokio::spawn(crate::queue::report_eviction_policy(
        queue.clone(),
        metrics.redis_policy.clone(),
        shutdown.clone(),
    ));

    let listener = crate::listen(args.metrics_bind).await?;
    let addr = listener.local_addr().unwrap_or(args.metrics_bind);
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    let probe = Arc::new(Probe {
        queue: queue.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
    });
    let probe_server = tokio::spawn(multivac_contract::serve(
        listener,
        probe_routes(probe),
        shutdown.clone(),
    ));
    let beats = tokio::spawn(heartbeat(
        queue.clone(),
        name.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));

    Worker::new(queue.clone(), consumer, store, settings, metrics, shutdown)
        .run()
        .await;
    let _ = beats.await;
    if let Err(e) = queue.forget(&name).await {
        tracing::debug!(error = %e, "could not remove the heartbeat");
    }
    match probe_server.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(Error::Serve(source)),
        Err(e) => Err(Error::Serve(std::io::Error::other(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, bytes: usize) -> Entry {
        Entry {
            id: id.to_owned(),
            payload: Payload::Datum("x".repeat(bytes)),
        }
    }

    #[test]
    fn groups_are_bounded_by_bytes_and_never_empty() {
        let sizes = |groups: &[Vec<Entry>]| -> Vec<Vec<usize>> {
            groups
                .iter()
                .map(|g| g.iter().map(Entry::size).collect())
                .collect()
        };
        let entries = |sizes: &[usize]| -> Vec<Entry> {
            sizes
                .iter()
                .enumerate()
                .map(|(i, s)| entry(&i.to_string(), *s))
                .collect()
        };
        // (entry sizes, byte bound, groups)
        #[rustfmt::skip]
        type Case = (&'static [usize], usize, Vec<Vec<usize>>);
        let table: [Case; 6] = [
            (&[], 10, vec![]),
            (&[3, 3, 3], 10, vec![vec![3, 3, 3]]),
            (&[4, 4, 4], 10, vec![vec![4, 4], vec![4]]),
            (&[5, 5, 5, 5], 10, vec![vec![5, 5], vec![5, 5]]),
            // larger than the bound: alone
            (&[1, 25, 1], 10, vec![vec![1], vec![25], vec![1]]),
            (&[25, 25], 10, vec![vec![25], vec![25]]),
        ];
        for (input, bound, expected) in table {
            let groups = by_bytes(entries(input), bound);
            assert_eq!(sizes(&groups), expected, "{input:?} by {bound}");
        }
        // Order is kept.
        let ids: Vec<String> = by_bytes(entries(&[4, 4, 4, 4]), 8)
            .into_iter()
            .flatten()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, ["0", "1", "2", "3"]);
    }

    #[test]
    fn reads_carry_about_batch_bytes_of_the_largest_entries_seen() {
        let settings = Settings {
            batch_size: 512,
            batch_bytes: 4 << 20,
            block: Duration::ZERO,
            claim_idle: Duration::ZERO,
            max_deliveries: 1,
            shutdown_timeout: Duration::ZERO,
            backend_timeout: Duration::ZERO,
        };
        // (largest entry of the last read, entries read next)
        for (largest, count) in [
            (ASSUMED_ENTRY_BYTES, 64),
            (100, 512),
            (0, 512),
            (1 << 20, 4),
            (17 << 20, 1),
        ] {
            assert_eq!(settings.read_count(largest), count, "{largest}");
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
