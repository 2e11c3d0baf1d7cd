//! `multivac worker`: reads the stream in batches, learns each datum's
//! concepts, stores each batch in one bulk write and acknowledges it only
//! once MongoDB holds it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use multivac_contract::{DEAD_LETTER, Probes, Readiness, Shutdown, encode_metrics, probe_routes};

use crate::Error;
use crate::config::{WorkerArgs, ms};
use crate::metrics::WorkerMetrics;
use crate::queue::{Consumer, Entry, Heartbeat, Payload, Queue};
use crate::store::{Learned, Store};

/// How often a worker refreshes its heartbeat.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// How long a heartbeat lives: /zzz lists workers seen in this window.
const HEARTBEAT_TTL: Duration = Duration::from_secs(30);
/// Longest pause between retries of a failing backend.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The worker's tuning, from [`WorkerArgs`].
#[derive(Clone, Debug)]
struct Settings {
    batch_size: usize,
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

/// One worker: a consumer in the group plus the store.
struct Worker {
    queue: Queue,
    consumer: Consumer,
    store: Arc<Store>,
    settings: Settings,
    metrics: Arc<WorkerMetrics>,
    shutdown: Shutdown,
    stop_seen_at: Option<Instant>,
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

        // Entries a previous run under this name left unacknowledged.
        let mut own_pending_done = false;
        let mut last_claim: Option<Instant> = None;
        let mut attempt = 0;
        while !self.shutdown.is_triggered() {
            let read = if !own_pending_done {
                let r = self
                    .consumer
                    .read_own_pending(self.settings.batch_size)
                    .await;
                if matches!(&r, Ok(entries) if entries.is_empty()) {
                    own_pending_done = true;
                }
                r.map(|entries| entries.into_iter().map(|e| (e, 1)).collect())
            } else if last_claim.is_none_or(|t| t.elapsed() >= self.settings.claim_interval()) {
                last_claim = Some(Instant::now());
                let r = self
                    .consumer
                    .reclaim(self.settings.claim_idle, self.settings.batch_size)
                    .await;
                if let Ok(claimed) = &r
                    && !claimed.is_empty()
                {
                    self.metrics.reclaimed.inc_by(claimed.len() as u64);
                    tracing::info!(
                        count = claimed.len(),
                        "reclaimed entries left idle by other consumers"
                    );
                    // More may be waiting: claim again next round.
                    last_claim = None;
                }
                r
            } else {
                self.consumer
                    .read_new(self.settings.batch_size, self.settings.block)
                    .await
                    .map(|entries| entries.into_iter().map(|e| (e, 1)).collect())
            };
            match read {
                Ok(batch) => {
                    attempt = 0;
                    if !batch.is_empty() && matches!(self.process(batch).await, Outcome::Abandoned)
                    {
                        break;
                    }
                }
                Err(e) => {
                    self.metrics.queue_errors.inc();
                    tracing::warn!(error = %e, "reading the queue failed; retrying");
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

    #[tracing::instrument(
        name = "batch",
        skip_all,
        fields(size = batch.len(), first = batch.first().map(|(entry, _)| entry.id.as_str()))
    )]
    async fn process(&mut self, batch: Vec<(Entry, u64)>) -> Outcome {
        let start = Instant::now();
        let mut learned = Vec::with_capacity(batch.len());
        let mut store_checked = None;
        for (entry, deliveries) in batch {
            match entry.payload {
                Payload::Malformed { reason, raw } => {
                    self.dead_letter(&entry.id, &raw, &reason, deliveries).await;
                }
                Payload::Datum(text) if deliveries > self.settings.max_deliveries => {
                    // Dead-letter only while MongoDB answers: then the failures
                    // were the entry's own, not an outage's.
                    if *store_checked.get_or_insert(self.store.ping().await.is_ok()) {
                        let reason = format!(
                            "delivered {deliveries} times without being acknowledged (MULTIVAC_MAX_DELIVERIES)"
                        );
                        self.dead_letter(&entry.id, text.as_bytes(), &reason, deliveries)
                            .await;
                    } else {
                        learned.push(Learned::new(entry.id, text));
                    }
                }
                Payload::Datum(text) => learned.push(Learned::new(entry.id, text)),
            }
        }
        if learned.is_empty() {
            return Outcome::Done;
        }
        let ids: Vec<String> = learned.iter().map(|l| l.id.clone()).collect();

        let mut attempt = 0;
        loop {
            let written = tokio::time::timeout(
                self.settings.backend_timeout,
                self.store.write_batch(&learned),
            )
            .await;
            let error = match written {
                Ok(Ok(())) => break,
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
        }

        let mut attempt = 0;
        while let Err(e) = self.consumer.ack(&ids).await {
            self.metrics.queue_errors.inc();
            tracing::warn!(error = %e, entries = ids.len(), "acknowledging a stored batch failed; retrying");
            if self.give_up() {
                // Stored but unacknowledged: a redelivery is harmless.
                return Outcome::Abandoned;
            }
            self.pause(attempt).await;
            attempt += 1;
        }
        self.metrics.processed.inc_by(ids.len() as u64);
        self.metrics.batches.inc();
        self.metrics
            .batch_duration
            .observe(start.elapsed().as_secs_f64());
        tracing::debug!(entries = ids.len(), elapsed = ?start.elapsed(), "batch learned");
        Outcome::Done
    }

    async fn dead_letter(&mut self, id: &str, raw: &[u8], reason: &str, deliveries: u64) {
        let mut attempt = 0;
        loop {
            match self.consumer.dead_letter(id, raw, reason, deliveries).await {
                Ok(()) => {
                    self.metrics.dead_lettered.inc();
                    tracing::warn!(id, reason, "moved an entry to {DEAD_LETTER}");
                    return;
                }
                Err(e) => {
                    self.metrics.queue_errors.inc();
                    tracing::warn!(error = %e, id, "dead-lettering failed; retrying");
                    if self.give_up() {
                        return;
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
    async fn readiness(&self) -> Readiness {
        crate::http::backends_readiness(&self.queue, &self.store).await
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
        "starting worker"
    );

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

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
