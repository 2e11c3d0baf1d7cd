//! One MultiVac's polling loop: read the backlog, decide, apply the worker
//! replicas and the status, each only when it changed. Each MultiVac has its
//! own task, so a slow or unreachable Redis only delays its own MultiVac, and
//! a Redis that keeps failing is polled less often ([`next_poll_in`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use super::backlog::{BacklogError, BacklogReader};
use super::decision::{self, Decision, History, Params};
use super::metrics::{DecisionLabels, Metrics, MultiVacLabels};
use super::resolver::Resolver;
use super::status::{self, DegradedState, ScalerStatus};
use crate::Context;
use crate::cache::Cached;
use crate::crd::{MultiVac, SCALER_FIELD_MANAGER, SecretSource, WorkersSpec, now_seconds};

/// After a failed read, the Redis URL is read again from its Secret if it is
/// older than this (a rotated password shows as a failed read), so a Redis
/// that keeps failing costs at most one GET per 30 s, not one per poll.
const URL_TTL: Duration = Duration::from_secs(30);
/// While reads succeed, the URL is read again after this long: one GET per
/// MultiVac per 5 min, whatever the poll interval.
const URL_MAX_AGE: Duration = Duration::from_secs(300);
/// The longest wait between two polls of a MultiVac whose reads keep
/// failing, in poll intervals (a minute at the default 5 s interval).
const MAX_BACKOFF_INTERVALS: u32 = 12;
/// Upper bound on one backlog read (connect + reply), beside the client's own
/// timeouts: a poll never hangs on Redis.
const READ_BUDGET: Duration = Duration::from_secs(5);
/// Consecutive failed reads before `Degraded=True`: one lost packet is not
/// an outage worth two status writes.
const FAILURES_BEFORE_DEGRADED: u32 = 2;

/// Why a poll could not read the backlog.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("{0}")]
    Url(String),
    /// The API server did not answer a Secret read (throttled, failing or
    /// unreachable): says nothing about the Secret or Redis.
    #[error("{0}")]
    Api(String),
    #[error("{0}")]
    Backlog(#[from] BacklogError),
    #[error("Redis did not answer within {}s", READ_BUDGET.as_secs())]
    Timeout,
}

/// Where the backlog is read: the Redis URL and, for a private CA, its PEM.
#[derive(Clone)]
struct RedisTarget {
    url: String,
    ca: Option<Vec<u8>>,
}

/// The wait before the next poll after `failures` failed reads in a row: one
/// poll interval while reads succeed and after the first failure (one lost
/// packet does not slow the scaler down), then twice as long after each
/// further failure, up to [`MAX_BACKOFF_INTERVALS`] intervals.
pub(super) fn next_poll_in(interval: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    interval * (1u32 << doublings).min(MAX_BACKOFF_INTERVALS)
}

/// The wait before a new poller's first poll: a point of the poll interval
/// fixed by the MultiVac's name. The pollers of an operator that starts with
/// 1,000 MultiVacs then spread their polls (Secret reads, DNS lookups, Redis
/// connections) over the interval instead of sending them all at once.
pub(super) fn first_poll_in(key: &ObjectRef<MultiVac>, interval: Duration) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    (&key.namespace, &key.name).hash(&mut hasher);
    const POINTS: u64 = 1000;
    interval.mul_f64((hasher.finish() % POINTS) as f64 / POINTS as f64)
}

/// `spec.workers.pollIntervalSeconds`, at least 1 s.
fn poll_interval(mv: &MultiVac) -> Duration {
    Duration::from_secs(mv.spec.workers.poll_interval_seconds.max(1) as u64)
}

/// The part of `spec.workers` the decision needs.
fn params(w: &WorkersSpec) -> Params {
    Params {
        min_replicas: w.min_replicas.max(0) as u32,
        max_replicas: w.max_replicas.max(0) as u32,
        target_backlog_per_worker: w.target_backlog_per_worker.max(1) as u64,
        stabilization: Duration::from_secs(w.scale_down_stabilization_seconds.max(0) as u64),
    }
}

impl ReadError {
    fn reason(&self) -> &'static str {
        match self {
            Self::Url(_) => status::REASON_SECRET,
            _ => status::REASON_REDIS,
        }
    }
}

/// What a poll reads of the worker Deployment besides its generation: the
/// replicas asked for and those that exist, decoded alone from the cached
/// JSON every poll rather than the whole Deployment.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct WorkerCounts {
    spec: Replicas,
    status: Replicas,
}

#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct Replicas {
    replicas: Option<i32>,
}

/// What every poller shares: the operator's context, the metrics, the
/// controller's stores, the resolver, and the slots for API requests.
#[derive(Clone)]
pub(super) struct Shared {
    pub(super) ctx: Arc<Context>,
    pub(super) metrics: Metrics,
    pub(super) multivacs: Store<MultiVac>,
    pub(super) deployments: Store<Cached<Deployment>>,
    pub(super) resolver: Resolver,
    /// Bounds the pollers' API requests in flight (see [`API_REQUESTS_IN_FLIGHT`]).
    pub(super) api_slots: Arc<Semaphore>,
}

/// The pollers' API requests in flight at once. Each request in flight takes
/// an HTTP/1.1 connection to the API server, and the client keeps idle ones
/// for 90 s: when 1,000 pollers read their Secrets at the same moment (an
/// operator restart), unbounded, they opened about 900 connections, 25 MB of
/// buffers kept after the burst.
pub(super) const API_REQUESTS_IN_FLIGHT: usize = 8;

/// The state one MultiVac's task carries from poll to poll.
pub(super) struct Poller {
    shared: Shared,
    key: ObjectRef<MultiVac>,
    reader: BacklogReader,
    url: Option<((SecretSource, Option<SecretSource>), RedisTarget, Instant)>,
    history: History,
    /// The last replicas we applied and the Deployment generation the API
    /// server answered with: until the watch shows that generation, the
    /// store's copy is older than our write.
    applied: Option<(i32, i64)>,
    /// What we last wrote (or found) in the status, to write only changes.
    written: Option<ScalerStatus>,
    last_backlog: Option<i64>,
    last_scale_time: Option<Time>,
    failures: u32,
}

impl Poller {
    pub(super) fn new(shared: &Shared, key: ObjectRef<MultiVac>) -> Self {
        Self {
            shared: shared.clone(),
            key,
            reader: BacklogReader::new(shared.resolver.clone()),
            url: None,
            history: History::default(),
            applied: None,
            written: None,
            last_backlog: None,
            last_scale_time: None,
            failures: 0,
        }
    }

    /// Polls until the MultiVac leaves the store (or the task is aborted),
    /// the first time after [`first_poll_in`].
    pub(super) async fn run(mut self) {
        if let Some(mv) = self.shared.multivacs.get(&self.key) {
            tokio::time::sleep(first_poll_in(&self.key, poll_interval(&mv))).await;
        }
        loop {
            let Some(mv) = self.shared.multivacs.get(&self.key) else {
                return;
            };
            if mv.meta().deletion_timestamp.is_some() {
                return;
            }
            let interval = poll_interval(&mv);
            let generation = mv.metadata.generation;
            let started = tokio::time::Instant::now();
            // Boxed: the state of a poll in progress (its Redis and API
            // requests) is several KB, and inline it would stay in each of
            // 1,000 waiting tasks.
            Box::pin(self.poll(&mv)).await;
            self.shared
                .metrics
                .poll_duration
                .observe(started.elapsed().as_secs_f64());
            drop(mv);
            self.wait(started, interval, generation).await;
        }
    }

    /// Sleeps until the next poll is due ([`next_poll_in`]); while backing
    /// off, looks every interval whether the spec changed (a fixed Redis
    /// reference is polled at once, not after the backoff).
    async fn wait(
        &self,
        started: tokio::time::Instant,
        interval: Duration,
        generation: Option<i64>,
    ) {
        let due = started + next_poll_in(interval, self.failures);
        let mut look = started + interval;
        while look < due {
            tokio::time::sleep_until(look).await;
            let now = self
                .shared
                .multivacs
                .get(&self.key)
                .map(|mv| mv.metadata.generation);
            if now != Some(generation) {
                return;
            }
            look += interval;
        }
        tokio::time::sleep_until(due).await;
    }

    fn labels(&self) -> MultiVacLabels {
        MultiVacLabels {
            namespace: self.key.namespace.clone().unwrap_or_default(),
            name: self.key.name.clone(),
        }
    }

    /// One poll: read, decide, scale if the count changes, write the status if it changed.
    async fn poll(&mut self, mv: &MultiVac) {
        let ns = self.key.namespace.clone().unwrap_or_default();
        let worker = mv.worker_name();
        let Some(cached) = self
            .shared
            .deployments
            .get(&ObjectRef::new(&worker).within(&ns))
        else {
            // The reconciler has not created it yet; nothing to size.
            debug!(multivac = %self.key, "worker Deployment not there yet");
            return;
        };
        let counts = match cached.fields::<WorkerCounts>() {
            Ok(counts) => counts,
            Err(e) => {
                warn!(multivac = %self.key, error = %e, "cannot read the cached worker Deployment");
                return;
            }
        };
        let generation = cached.meta().generation.unwrap_or(0);
        self.resume_from(mv);
        let labels = self.labels();
        self.shared
            .metrics
            .max_replicas
            .get_or_create(&labels)
            .set(i64::from(mv.spec.workers.max_replicas));
        let current = self.replicas_in_force(generation, &counts);
        let Some((decision, degraded)) = self.decide(mv, current).await else {
            return;
        };
        let desired = i32::try_from(decision.desired).unwrap_or(i32::MAX);
        self.shared
            .metrics
            .desired
            .get_or_create(&labels)
            .set(desired as i64);
        self.shared
            .metrics
            .degraded
            .get_or_create(&labels)
            .set(i64::from(degraded.status));
        if desired != current && self.scale(&ns, &worker, desired).await {
            self.announce(mv, current, desired, &decision).await;
        }
        let want = ScalerStatus {
            current: counts.status.replicas.unwrap_or(0),
            desired,
            backlog: self.last_backlog,
            last_scale_time: self.last_scale_time.clone(),
            degraded,
        };
        self.write_status(mv, &ns, want).await;
    }

    /// On the first poll, starts from what a previous operator wrote, so a
    /// restart with nothing changed writes nothing.
    fn resume_from(&mut self, mv: &MultiVac) {
        if self.written.is_some() {
            return;
        }
        self.written = ScalerStatus::from_status(mv.status.as_ref());
        if let Some(w) = &self.written {
            self.last_backlog = w.backlog;
            self.last_scale_time = w.last_scale_time.clone();
        }
    }

    /// The worker replicas in force: ours until the watch shows our last write.
    fn replicas_in_force(&self, live_generation: i64, counts: &WorkerCounts) -> i32 {
        match self.applied {
            Some((replicas, generation)) if live_generation < generation => replicas,
            _ => counts.spec.replicas.unwrap_or(1),
        }
    }

    /// Reads the backlog and decides the replicas, with what `Degraded`
    /// should say. `None`: the read failed before the first good one, so
    /// there is nothing to write yet.
    async fn decide(&mut self, mv: &MultiVac, current: i32) -> Option<(Decision, DegradedState)> {
        let params = params(&mv.spec.workers);
        let now = Instant::now();
        let running = current.max(0) as u32;
        match self.read(mv).await {
            Ok(backlog) => {
                self.failures = 0;
                let entries = i64::try_from(backlog).unwrap_or(i64::MAX);
                self.last_backlog = Some(entries);
                self.shared
                    .metrics
                    .backlog
                    .get_or_create(&self.labels())
                    .set(entries);
                let d = decision::decide(now, backlog, &params, running, &mut self.history);
                Some((d, self.degraded_when_read()))
            }
            Err(e) => {
                self.failures += 1;
                self.shared
                    .metrics
                    .read_errors
                    .get_or_create(&self.labels())
                    .inc();
                warn!(multivac = %self.key, error = %e, "cannot read the backlog; keeping {current} workers");
                decision::hold(now, &params, running, &mut self.history);
                let keep = Decision {
                    desired: running,
                    recommendation: running,
                    reason: decision::Reason::Steady,
                };
                Some((keep, self.degraded_after(&e, current)?))
            }
        }
    }

    /// `Degraded` after a good read: true while Redis' eviction policy may
    /// delete the stream (an external Redis with `allkeys-*`), which loses
    /// accepted data at maxmemory; false otherwise, also when `CONFIG` is
    /// refused (a provider may disable it: the policy is then unknown).
    fn degraded_when_read(&self) -> DegradedState {
        let policy = self.reader.eviction_policy();
        let unsafe_policy = policy.filter(|p| p.may_evict_the_stream());
        self.shared
            .metrics
            .eviction_unsafe
            .get_or_create(&self.labels())
            .set(i64::from(unsafe_policy.is_some()));
        match unsafe_policy.and_then(|p| p.warning()) {
            Some(warning) => {
                let state = DegradedState {
                    status: true,
                    reason: status::REASON_EVICTION.into(),
                    message: warning,
                };
                if self.written.as_ref().map(|w| &w.degraded) != Some(&state) {
                    warn!(multivac = %self.key, "{}", state.message);
                }
                state
            }
            None => DegradedState::ok(),
        }
    }

    /// `Degraded` after a failed read: true from the second failure in a row.
    fn degraded_after(&self, e: &ReadError, current: i32) -> Option<DegradedState> {
        // An API server that throttles or fails tells nothing new: with 1,000
        // MultiVacs, answers 429 to the Secret reads would otherwise flip the
        // reason between Redis and the Secret, a status write each time.
        if self.failures < FAILURES_BEFORE_DEGRADED || matches!(e, ReadError::Api(_)) {
            // Not yet an outage: keep whatever the condition says (nothing
            // at all before the first good read).
            return self.written.as_ref().map(|w| w.degraded.clone());
        }
        Some(match self.written.as_ref() {
            // Same outage, same reason: keep the message already written.
            // The error text varies from read to read (timeouts, resolver
            // answers), and rewriting status for it would be a write every
            // poll for as long as Redis stays away.
            Some(w) if w.degraded.status && w.degraded.reason == e.reason() => w.degraded.clone(),
            _ => DegradedState {
                status: true,
                reason: e.reason().into(),
                message: format!(
                    "cannot read the backlog of multivac:data: {e}; keeping {current} workers and retrying, less often while it fails (at least every {MAX_BACKOFF_INTERVALS} poll intervals)"
                ),
            },
        })
    }

    /// The Redis URL (and, when the spec names one, the CA) from the Secrets
    /// the app uses, cached: see [`URL_TTL`] and [`URL_MAX_AGE`].
    async fn url(&mut self, mv: &MultiVac, ns: &str) -> Result<RedisTarget, ReadError> {
        let sources = (mv.redis_url_source(), mv.redis_ca_source());
        let max_age = if self.failures == 0 {
            URL_MAX_AGE
        } else {
            URL_TTL
        };
        let cached = self
            .url
            .as_ref()
            .filter(|(s, _, _)| *s == sources)
            .map(|(_, target, at)| (target.clone(), at.elapsed() < max_age));
        if let Some((target, true)) = cached {
            return Ok(target);
        }
        match self.read_target(ns, &sources).await {
            Ok(target) => {
                self.url = Some((sources, target.clone(), Instant::now()));
                Ok(target)
            }
            // The API server could not answer now: what was read last is
            // still the best guess, and is read again next time.
            Err(ReadError::Api(e)) => match cached {
                Some((target, _)) => {
                    debug!(multivac = %self.key, error = %e, "keeping the Redis URL read before");
                    Ok(target)
                }
                None => Err(ReadError::Api(e)),
            },
            Err(e) => {
                self.url = None;
                Err(e)
            }
        }
    }

    /// The Redis URL and CA, read from their Secrets now.
    async fn read_target(
        &self,
        ns: &str,
        sources: &(SecretSource, Option<SecretSource>),
    ) -> Result<RedisTarget, ReadError> {
        let url = self.secret_value(ns, &sources.0, "the Redis URL").await?;
        let url = String::from_utf8(url).map_err(|_| {
            ReadError::Url(format!(
                "Secret {} key {}: the Redis URL is not UTF-8",
                sources.0.name, sources.0.key
            ))
        })?;
        let ca = match &sources.1 {
            Some(ca) => Some(self.secret_value(ns, ca, "the Redis CA (PEM)").await?),
            None => None,
        };
        Ok(RedisTarget { url, ca })
    }

    /// One key of a Secret in `ns` (GET only: the operator may not list or watch Secrets).
    async fn secret_value(
        &self,
        ns: &str,
        source: &SecretSource,
        what: &str,
    ) -> Result<Vec<u8>, ReadError> {
        let secrets: Api<Secret> = Api::namespaced(self.shared.ctx.client.clone(), ns);
        let _slot = self.api_slot().await;
        let secret = secrets.get_opt(&source.name).await.map_err(|e| {
            let message = format!("cannot read Secret {}: {e}", source.name);
            match transient(&e) {
                true => ReadError::Api(message),
                false => ReadError::Url(message),
            }
        })?;
        let secret = secret.ok_or_else(|| {
            ReadError::Url(format!(
                "Secret {} does not exist: create it with key {} holding {what}",
                source.name, source.key
            ))
        })?;
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(&source.key))
            .map(|b| b.0.clone())
            .ok_or_else(|| {
                ReadError::Url(format!(
                    "Secret {} has no key {} with {what}",
                    source.name, source.key
                ))
            })
    }

    async fn read(&mut self, mv: &MultiVac) -> Result<u64, ReadError> {
        let ns = self.key.namespace.clone().unwrap_or_default();
        let target = self.url(mv, &ns).await?;
        let read = self.reader.read_with_ca(&target.url, target.ca.as_deref());
        match tokio::time::timeout(READ_BUDGET, read).await {
            Ok(Ok(reading)) => {
                let backlog = reading.backlog().total();
                debug!(multivac = %self.key, backlog, ?reading, "backlog read");
                Ok(backlog)
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                self.reader = BacklogReader::default();
                Err(ReadError::Timeout)
            }
        }
    }

    /// Sets the worker replicas (the scaler's only field of the Deployment);
    /// false when the API server refused, to be retried next poll.
    async fn scale(&mut self, ns: &str, worker: &str, desired: i32) -> bool {
        let api: Api<Deployment> = Api::namespaced(self.shared.ctx.client.clone(), ns);
        let params = PatchParams::apply(SCALER_FIELD_MANAGER).force();
        let body = status::replicas_patch(worker, ns, desired);
        let _slot = self.api_slot().await;
        match api.patch(worker, &params, &Patch::Apply(&body)).await {
            Ok(dep) => {
                self.shared.ctx.metrics.write("scaler:Deployment/replicas");
                self.applied = Some((desired, dep.metadata.generation.unwrap_or(0)));
                self.last_scale_time = Some(now_seconds());
                true
            }
            Err(e) => {
                warn!(multivac = %self.key, error = %e, "cannot set the worker replicas to {desired}; retrying next poll");
                false
            }
        }
    }

    /// A log line, the decision metric and a `ScaledUp`/`ScaledDown` Event.
    async fn announce(&self, mv: &MultiVac, current: i32, desired: i32, decision: &Decision) {
        let (direction, reason) = if desired > current {
            ("up", "ScaledUp")
        } else {
            ("down", "ScaledDown")
        };
        let backlog = self.last_backlog.unwrap_or(0);
        let note = format!(
            "scaled workers from {current} to {desired}: backlog {backlog} entries, recommendation {} ({:?})",
            decision.recommendation, decision.reason
        );
        info!(multivac = %self.key, current, desired, backlog, "{reason}");
        self.shared
            .metrics
            .decisions
            .get_or_create(&DecisionLabels {
                namespace: self.key.namespace.clone().unwrap_or_default(),
                name: self.key.name.clone(),
                direction,
            })
            .inc();
        let event = Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(note),
            action: "Scale".into(),
            secondary: None,
        };
        let _slot = self.api_slot().await;
        if let Err(e) = self
            .shared
            .ctx
            .recorder
            .publish(&event, &mv.object_ref(&()))
            .await
        {
            warn!(multivac = %self.key, error = %e, "cannot publish the {reason} event");
        }
    }

    /// Waits for one of the pollers' [`API_REQUESTS_IN_FLIGHT`] slots.
    async fn api_slot(&self) -> OwnedSemaphorePermit {
        self.shared
            .api_slots
            .clone()
            .acquire_owned()
            .await
            .expect("the API slots are never closed")
    }

    async fn write_status(&mut self, mv: &MultiVac, ns: &str, want: ScalerStatus) {
        let stored = ScalerStatus::from_status(mv.status.as_ref());
        if self.written.as_ref() == Some(&want) || stored.as_ref() == Some(&want) {
            self.written = Some(want);
            return;
        }
        // lastTransitionTime moves only when the condition's status flips.
        let since = mv
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == status::DEGRADED))
            .filter(|c| (c.status == "True") == want.degraded.status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(now_seconds);
        let condition = status::degraded_condition(&want.degraded, since);
        let body = status::status_patch(&want, &condition);
        let api: Api<MultiVac> = Api::namespaced(self.shared.ctx.client.clone(), ns);
        let params = PatchParams::apply(SCALER_FIELD_MANAGER).force();
        let _slot = self.api_slot().await;
        match api
            .patch_status(&mv.name_any(), &params, &Patch::Apply(&body))
            .await
        {
            Ok(_) => {
                self.shared.ctx.metrics.write("scaler:MultiVac/status");
                self.written = Some(want);
            }
            Err(e) => {
                warn!(multivac = %self.key, error = %e, "cannot write the scaler status; retrying next poll")
            }
        }
    }
}

/// Whether a failed request may well succeed if sent again: the API server
/// throttled it (429), failed (5xx) or was not reached. A refusal (403, 404,
/// a bad request) is an answer about the request itself.
fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) => status.code == 429 || status.code >= 500,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn a_failing_redis_is_polled_less_often_up_to_a_cap() {
        let s = Duration::from_secs;
        // (poll interval, failed reads in a row, wait before the next poll)
        let table = [
            (s(5), 0, s(5)),
            (s(5), 1, s(5)),
            (s(5), 2, s(10)),
            (s(5), 3, s(20)),
            (s(5), 4, s(40)),
            (s(5), 5, s(60)),
            (s(5), 6, s(60)),
            (s(5), 1000, s(60)),
            (s(5), u32::MAX, s(60)),
            (s(1), 4, s(8)),
            (s(1), 10, s(12)),
            (s(30), 2, s(60)),
            (s(30), 9, s(360)),
        ];
        for (interval, failures, wait) in table {
            assert_eq!(
                next_poll_in(interval, failures),
                wait,
                "{interval:?} after {failures} failures"
            );
        }
    }

    #[test]
    fn the_first_polls_of_a_thousand_multivacs_spread_over_the_interval() {
        let interval = Duration::from_secs(5);
        let offsets: Vec<Duration> = (1..=1000)
            .map(|i| {
                let key = ObjectRef::<MultiVac>::new(&format!("mv{i:04}")).within("bench");
                first_poll_in(&key, interval)
            })
            .collect();
        assert!(offsets.iter().all(|o| *o < interval), "{offsets:?}");
        let mut tenths = [0; 10];
        for o in &offsets {
            tenths[(o.as_secs_f64() / interval.as_secs_f64() * 10.0) as usize] += 1;
        }
        assert!(tenths.iter().all(|n| (60..=140).contains(n)), "{tenths:?}");
        let key = ObjectRef::<MultiVac>::new("mv0001").within("bench");
        assert_eq!(
            first_poll_in(&key, interval),
            offsets[0],
            "not fixed by the name"
        );
    }

    /// A poller of `mv()` whose worker Deployment has 1 replica, its client
    /// talking to a fake API server that holds the credentials Secret with
    /// a Redis URL nothing listens at (port 1 refuses at once).
    fn poller_of(mv: &MultiVac) -> (Poller, crate::fake_api::FakeApi) {
        use kube::runtime::reflector;
        use kube::runtime::watcher::Event;
        let (client, api) = crate::fake_api::FakeApi::start();
        api.put(
            "/api/v1/namespaces/ns/secrets/mv-credentials",
            serde_json::json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "mv-credentials", "namespace": "ns"},
                "data": {"redis-url": "cmVkaXM6Ly86cHdAMTI3LjAuMC4xOjEvMA=="}}),
        );
        api.put(
            "/apis/multivac.io/v1alpha1/namespaces/ns/multivacs/mv",
            serde_json::to_value(mv).unwrap(),
        );
        let registry = std::sync::Mutex::new(Default::default());
        let ctx = Context::new(client, Arc::new(registry), "multivac-system".into());
        let metrics = Metrics::shared(&ctx.registry);
        let (multivacs, mut mv_writer) = reflector::store::<MultiVac>();
        mv_writer.apply_watcher_event(&Event::Apply(mv.clone()));
        let (deployments, mut writer) = reflector::store::<Cached<Deployment>>();
        let worker: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "mv-worker", "namespace": "ns", "generation": 1},
            "spec": {"replicas": 1, "selector": {}, "template": {}},
            "status": {"replicas": 1},
        }))
        .unwrap();
        writer.apply_watcher_event(&Event::Apply(Cached::new(worker)));
        let shared = Shared {
            ctx: Arc::new(ctx),
            metrics,
            multivacs,
            deployments,
            resolver: Resolver::default(),
            api_slots: Arc::new(Semaphore::new(API_REQUESTS_IN_FLIGHT)),
        };
        (Poller::new(&shared, ObjectRef::from_obj(mv)), api)
    }

    /// `mv()` whose status says what the scaler writes while Redis is away.
    fn mv_with_redis_unreachable() -> MultiVac {
        let mut mv = crate::resources::testing::mv(serde_json::json!({"image": "multivac:1"}));
        let degraded = DegradedState {
            status: true,
            reason: status::REASON_REDIS.into(),
            message: "cannot read the backlog".into(),
        };
        let written = ScalerStatus {
            current: 1,
            desired: 1,
            backlog: None,
            last_scale_time: None,
            degraded: degraded.clone(),
        };
        let condition = status::degraded_condition(&degraded, now_seconds());
        let body = status::status_patch(&written, &condition);
        mv.status = serde_json::from_value(body["status"].clone()).unwrap();
        mv
    }

    #[tokio::test]
    async fn a_poll_waits_for_a_free_api_slot_before_reading_its_secret() {
        let mv = mv_with_redis_unreachable();
        let (mut poller, api) = poller_of(&mv);
        let slots = poller.shared.api_slots.clone();
        let taken = slots
            .acquire_many(API_REQUESTS_IN_FLIGHT as u32)
            .await
            .unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(300), poller.poll(&mv)).await;
        assert!(waiting.is_err(), "the poll did not wait for a slot");
        assert_eq!(api.requests().len(), 0, "{:?}", api.requests());

        drop(taken);
        poller.poll(&mv).await;
        let sent: Vec<String> = api.requests().iter().map(|r| r.line()).collect();
        assert_eq!(sent, ["GET /api/v1/namespaces/ns/secrets/mv-credentials"]);
        assert_eq!(slots.available_permits(), API_REQUESTS_IN_FLIGHT);
    }

    #[tokio::test]
    async fn a_throttled_secret_read_writes_nothing_a_refused_one_says_why() {
        let mv = mv_with_redis_unreachable();
        let (mut poller, api) = poller_of(&mv);
        poller.failures = FAILURES_BEFORE_DEGRADED;
        let secret = "/api/v1/namespaces/ns/secrets/mv-credentials";

        // Redis still refuses: same reason, nothing to write.
        poller.poll(&mv).await;
        assert_eq!(api.writes(), Vec::<String>::new());

        // The URL is read again after a failure once it is URL_TTL old; the
        // API server throttles that read, then fails it.
        for code in [429, 503] {
            poller.url.as_mut().unwrap().2 -= URL_TTL;
            api.fail(Method::GET, secret, code, "TooManyRequests");
            poller.poll(&mv).await;
            assert_eq!(api.writes(), Vec::<String>::new(), "after a {code}");
        }
        // Throttled with nothing read before: still nothing written.
        poller.url = None;
        api.fail(Method::GET, secret, 429, "TooManyRequests");
        poller.poll(&mv).await;
        assert_eq!(api.writes(), Vec::<String>::new());

        // A refusal is an answer: Degraded now names the Secret.
        api.fail(Method::GET, secret, 403, "Forbidden");
        poller.poll(&mv).await;
        assert_eq!(
            api.writes(),
            ["PATCH /apis/multivac.io/v1alpha1/namespaces/ns/multivacs/mv/status"]
        );
        let written = poller.written.as_ref().unwrap();
        assert_eq!(written.degraded.reason, status::REASON_SECRET);
    }
}
