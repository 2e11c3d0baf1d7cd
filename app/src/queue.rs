//! The Redis Stream between the server and the workers.
//!
//! The server appends with XADD; workers read with XREADGROUP in the consumer
//! group, acknowledge (and delete) only what MongoDB holds, reclaim what dead
//! workers left behind with XAUTOCLAIM and move entries that keep failing to
//! a dead-letter stream. Nothing is trimmed: an entry leaves the stream only
//! after it is in MongoDB or in the dead-letter stream.

use std::time::Duration;

use multivac_contract::{
    Backlog, BacklogError, BacklogReading, DATA_FIELD, DEAD_LETTER, EvictionPolicy, GROUP,
    HEARTBEAT_PREFIX, RedisClientError, STREAM, acknowledge, env, read_backlog,
    read_eviction_policy, redis_client,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};
use redis::{AsyncCommands, Value};
use serde::{Deserialize, Serialize};

use multivac_contract::Shutdown;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::PolicyLabels;
use crate::redact::redact_url;

/// Redis failures, with what to check.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A command failed or Redis did not answer.
    #[error(
        "Redis at {url} is unreachable or failed: {source}; check {var} and that Redis is up",
        var = env::REDIS_URL
    )]
    Redis {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    /// Reading the backlog failed (see `multivac_contract::read_backlog`).
    #[error(
        "reading the backlog from Redis at {url} failed: {source}; check {var} and that Redis is up",
        var = env::REDIS_URL
    )]
    Backlog {
        url: String,
        #[source]
        source: BacklogError,
    },
    /// The URL (or the CA given for it) cannot be used.
    #[error("invalid {var} {url}: {source}", var = env::REDIS_URL)]
    Url {
        url: String,
        #[source]
        source: RedisClientError,
    },
}

impl QueueError {
    /// True when the command surely did not run: Redis answered with an
    /// error, or refused the connection (or the credentials). Otherwise (the
    /// connection broke, or no answer came in time) it may have run.
    pub fn surely_not_executed(&self) -> bool {
        match self {
            QueueError::Redis { source, .. } => {
                source.code().is_some()
                    || source.is_connection_refusal()
                    || source.kind() == redis::ErrorKind::AuthenticationFailed
            }
            QueueError::Url { .. } => true,
            QueueError::Backlog { .. } => false,
        }
    }

    /// Redis' error code when Redis answered with an error (`OOM`,
    /// `MISCONF`, `READONLY`, `LOADING`, ...), as opposed to not answering.
    pub fn redis_code(&self) -> Option<&str> {
        match self {
            QueueError::Redis { source, .. } => source.code(),
            QueueError::Backlog {
                source: BacklogError::Command(source),
                ..
            } => source.code(),
            _ => None,
        }
    }
}

/// A stream entry as a worker sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The stream entry id, which is also the MongoDB `data` key.
    pub id: String,
    /// What the entry carries.
    pub payload: Payload,
}

/// The content of a stream entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// A datum to learn from.
    Datum(String),
    /// An entry that can never be processed (written around the server: no
    /// `data` field, not UTF-8); it goes straight to the dead-letter stream,
    /// keeping whatever bytes it had.
    Malformed { reason: String, raw: Vec<u8> },
}

impl Entry {
    fn from_stream_id(mut entry: StreamId) -> Self {
        let malformed = |reason: &str, raw: Vec<u8>| Payload::Malformed {
            reason: reason.to_owned(),
            raw,
        };
        let payload = match entry.map.remove(DATA_FIELD) {
            Some(Value::BulkString(bytes)) => match String::from_utf8(bytes) {
                Ok(text) => Payload::Datum(text),
                Err(e) => malformed("the data field is not valid UTF-8", e.into_bytes()),
            },
            Some(Value::SimpleString(s)) => Payload::Datum(s),
            Some(_) => malformed("the data field is not a string", Vec::new()),
            // Also an entry deleted from the stream while still pending:
            // Redis then returns its id without fields.
            None => malformed("the entry has no data field", Vec::new()),
        };
        Entry {
            id: entry.id,
            payload,
        }
    }

    /// Bytes of data the entry carries (what learning and storing it costs
    /// grows with this).
    pub fn size(&self) -> usize {
        match &self.payload {
            Payload::Datum(text) => text.len(),
            Payload::Malformed { raw, .. } => raw.len(),
        }
    }
}

/// Reads Redis' `maxmemory-policy` once Redis answers, logs a warning when
/// it may evict the stream (or cannot be read) and sets `metric` (label
/// `policy`: the policy, `other` or `unknown`). Never fails the process: the
/// Redis may be a provider's with `CONFIG` disabled.
pub(crate) async fn report_eviction_policy(
    queue: Queue,
    metric: Family<PolicyLabels, Gauge>,
    mut shutdown: Shutdown,
) {
    let mut pause = Duration::from_millis(500);
    let policy = loop {
        match queue.eviction_policy().await {
            Ok(policy) => break policy,
            Err(e) => tracing::debug!(error = %e, "cannot read maxmemory-policy yet"),
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.wait() => return,
        }
        pause = (pause * 2).min(Duration::from_secs(30));
    };
    metric
        .get_or_create(&PolicyLabels {
            policy: policy.label(),
        })
        .set(1);
    match policy.warning() {
        Some(warning) => tracing::warn!(policy = policy.label(), "{warning}"),
        None => tracing::info!(
            policy = policy.label(),
            "Redis keeps the stream at maxmemory"
        ),
    }
}

/// A worker's heartbeat, stored with a TTL so dead workers disappear.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub(crate) consumer: String,
    /// Unix seconds of the worker's start.
    pub(crate) started_at: u64,
    /// Unix seconds of this beat.
    pub(crate) last_seen: u64,
    /// Data this worker has learned since it started.
    pub(crate) processed: u64,
}

/// The reconnecting connection both the producer and the consumer use, and
/// the URL with its password redacted for logs and errors. It connects
/// lazily, so a process starts (and reports not ready) while Redis is down.
/// `ca`: the PEM certificates a `rediss://` server's certificate is checked
/// against (else the public roots).
fn lazy_connection(
    url: &str,
    ca: Option<&[u8]>,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Result<(ConnectionManager, String), QueueError> {
    let redacted = redact_url(url);
    let invalid = |source| QueueError::Url {
        url: redacted.clone(),
        source,
    };
    let client = redis_client(url, ca).map_err(invalid)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    let conn = ConnectionManager::new_lazy_with_config(client, config)
        .map_err(|e| invalid(RedisClientError::Url(e)))?;
    Ok((conn, redacted))
}

/// A connection to the queue, shared by all tasks of a process.
///
/// Built on `ConnectionManager`, which multiplexes (and so pipelines) every
/// concurrent command on one connection and reconnects by itself; it connects
/// lazily so the server starts, and answers 503, while Redis is down.
#[derive(Clone)]
pub struct Queue {
    conn: ConnectionManager,
    url: String,
}

impl Queue {
    /// A lazily connected queue; `timeout` bounds every command and connect.
    pub fn connect(url: &str, timeout: Duration) -> Result<Self, QueueError> {
        Self::connect_with_ca(url, None, timeout)
    }

    /// [`Queue::connect`] to a `rediss://` Redis whose certificate `ca` (PEM) signed.
    pub fn connect_with_ca(
        url: &str,
        ca: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Self, QueueError> {
        let (conn, url) = lazy_connection(url, ca, timeout, timeout)?;
        Ok(Queue { conn, url })
    }

    fn err(&self, source: redis::RedisError) -> QueueError {
        QueueError::Redis {
            url: self.url.clone(),
            source,
        }
    }

    /// The URL without its password, for logs.
    pub(crate) fn redacted_url(&self) -> &str {
        &self.url
    }

    /// Appends a datum; the returned entry id means Redis has it.
    pub async fn push(&self, data: &str) -> Result<String, QueueError> {
        let mut conn = self.conn.clone();
        redis::cmd("XADD")
            .arg(STREAM)
            .arg("*")
            .arg(DATA_FIELD)
            .arg(data)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err(e))
    }

    /// PING, for readiness.
    pub(crate) async fn ping(&self) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.err(e))
    }

    /// Creates the stream and the consumer group if missing. The group starts
    /// at id 0 so data accepted before any worker ran is learned too.
    pub async fn ensure_group(&self) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(STREAM)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            // At maxmemory Redis refuses XGROUP CREATE (it may need memory)
            // before looking for the group: it may well be there already.
            Err(e) if e.code() == Some("OOM") => match self.backlog_reading().await {
                Ok(BacklogReading::Lag { .. } | BacklogReading::LenFallback { .. }) => Ok(()),
                _ => Err(self.err(e)),
            },
            Err(e) => Err(self.err(e)),
        }
    }

    /// Work waiting, as the contract defines it (the operator's scaler reads
    /// the same figure).
    pub async fn backlog(&self) -> Result<Backlog, QueueError> {
        self.backlog_reading()
            .await
            .map(|reading| reading.backlog())
    }

    async fn backlog_reading(&self) -> Result<BacklogReading, QueueError> {
        let mut conn = self.conn.clone();
        read_backlog(&mut conn)
            .await
            .map_err(|source| QueueError::Backlog {
                url: self.url.clone(),
                source,
            })
    }

    /// Redis' `maxmemory-policy`, to warn when it may evict the stream.
    pub(crate) async fn eviction_policy(&self) -> Result<EvictionPolicy, QueueError> {
        let mut conn = self.conn.clone();
        read_eviction_policy(&mut conn)
            .await
            .map_err(|e| self.err(e))
    }

    /// Entries in the dead-letter stream.
    pub async fn dead_letters(&self) -> Result<u64, QueueError> {
        let mut conn = self.conn.clone();
        conn.xlen(DEAD_LETTER).await.map_err(|e| self.err(e))
    }

    /// Records that `beat.consumer` is alive for `ttl`.
    pub(crate) async fn heartbeat(
        &self,
        beat: &Heartbeat,
        ttl: Duration,
    ) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        let value = serde_json::to_string(beat).expect("a heartbeat serializes");
        conn.set_ex::<_, _, ()>(
            format!("{HEARTBEAT_PREFIX}{}", beat.consumer),
            value,
            ttl.as_secs().max(1),
        )
        .await
        .map_err(|e| self.err(e))
    }

    /// Removes a worker's heartbeat when it stops cleanly.
    pub(crate) async fn forget(&self, consumer: &str) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        conn.del::<_, ()>(format!("{HEARTBEAT_PREFIX}{consumer}"))
            .await
            .map_err(|e| self.err(e))
    }

    /// Workers whose heartbeat has not expired, sorted by name.
    pub async fn live_workers(&self) -> Result<Vec<Heartbeat>, QueueError> {
        let mut conn = self.conn.clone();
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{HEARTBEAT_PREFIX}*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.err(e))?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err(e))?;
        let mut beats: Vec<Heartbeat> = values
            .into_iter()
            .flatten()
            .filter_map(|v| serde_json::from_str(&v).ok())
            .collect();
        beats.sort_by(|a, b| a.consumer.cmp(&b.consumer));
        Ok(beats)
    }
}

/// One worker's view of the consumer group.
///
/// It has its own connection: XREADGROUP BLOCK holds a connection for the
/// whole wait, which would stall every other command multiplexed on it.
#[derive(Clone)]
pub struct Consumer {
    conn: ConnectionManager,
    url: String,
    name: String,
    claim_cursor: String,
}

impl Consumer {
    /// A lazily connected consumer named `name`; `timeout` bounds commands
    /// other than the blocking wait, which gets `block` on top.
    pub fn connect(
        url: &str,
        name: &str,
        timeout: Duration,
        block: Duration,
    ) -> Result<Self, QueueError> {
        Self::connect_with_ca(url, None, name, timeout, block)
    }

    /// [`Consumer::connect`] to a `rediss://` Redis whose certificate `ca` (PEM) signed.
    pub fn connect_with_ca(
        url: &str,
        ca: Option<&[u8]>,
        name: &str,
        timeout: Duration,
        block: Duration,
    ) -> Result<Self, QueueError> {
        let (conn, url) = lazy_connection(url, ca, timeout, timeout + block)?;
        Ok(Consumer {
            conn,
            url,
            name: name.to_owned(),
            claim_cursor: "0-0".to_owned(),
        })
    }

    /// This consumer's name in the group.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn err(&self, source: redis::RedisError) -> QueueError {
        QueueError::Redis {
            url: self.url.clone(),
            source,
        }
    }

    async fn read(
        &mut self,
        id: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Entry>, QueueError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(&self.name)
            .arg("COUNT")
            .arg(count);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(STREAM).arg(id);
        let reply: redis::RedisResult<Option<StreamReadReply>> =
            cmd.query_async(&mut self.conn).await;
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) if e.code() == Some("NOGROUP") => {
                // Redis lost the group (restarted without persistence):
                // recreate it and read again next time.
                let queue = Queue {
                    conn: self.conn.clone(),
                    url: self.url.clone(),
                };
                queue.ensure_group().await?;
                return Ok(Vec::new());
            }
            Err(e) => return Err(self.err(e)),
        };
        Ok(reply
            .map(|r| {
                r.keys
                    .into_iter()
                    .flat_map(|k| k.ids)
                    .map(Entry::from_stream_id)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// New entries for this consumer, waiting up to `block` for some.
    pub async fn read_new(
        &mut self,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Entry>, QueueError> {
        self.read(">", count, Some(block)).await
    }

    /// The oldest entry delivered to this consumer name and not yet
    /// acknowledged (left by a previous run of this pod, or reclaimed from
    /// another consumer), with how often Redis has delivered it, this read
    /// included: reading a consumer's own history counts as a delivery, so
    /// an entry that kills every worker that reads it reaches
    /// `MULTIVAC_MAX_DELIVERIES` even when the same consumer name restarts.
    /// One at a time, so only the entry being tried is counted.
    pub(crate) async fn next_own_pending(&mut self) -> Result<Option<(Entry, u64)>, QueueError> {
        let Some(entry) = self.read("0", 1, None).await?.pop() else {
            return Ok(None);
        };
        let pending: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(STREAM)
            .arg(GROUP)
            .arg(&entry.id)
            .arg(&entry.id)
            .arg(1)
            .arg(&self.name)
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.err(e))?;
        let deliveries = pending
            .ids
            .first()
            .map(|p| p.times_delivered as u64)
            .unwrap_or(1);
        Ok(Some((entry, deliveries)))
    }

    /// Takes over up to `count` entries that other consumers left
    /// unacknowledged for longer than `min_idle`; returns how many. They
    /// become this consumer's pending entries, read with
    /// [`Consumer::next_own_pending`]. The claim itself (JUSTID) does not
    /// count a delivery: only trying an entry does, so entries that merely
    /// shared a batch with one that kills workers are not dead-lettered with
    /// it.
    pub async fn reclaim(&mut self, min_idle: Duration, count: usize) -> Result<usize, QueueError> {
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(STREAM)
            .arg(GROUP)
            .arg(&self.name)
            .arg(min_idle.as_millis() as u64)
            .arg(&self.claim_cursor)
            .arg("COUNT")
            .arg(count)
            .arg("JUSTID")
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.err(e))?;
        self.claim_cursor = reply.next_stream_id;
        Ok(reply.claimed.len())
    }

    /// Resets the idle time of entries this consumer is still working on
    /// (XCLAIM JUSTID does not count a delivery), so a worker that is alive
    /// but waiting for MongoDB keeps them instead of others stealing them.
    pub(crate) async fn touch(&mut self, ids: &[String]) -> Result<(), QueueError> {
        if ids.is_empty() {
            return Ok(());
        }
        redis::cmd("XCLAIM")
            .arg(STREAM)
            .arg(GROUP)
            .arg(&self.name)
            .arg(0)
            .arg(ids)
            .arg("JUSTID")
            .query_async::<Value>(&mut self.conn)
            .await
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Acknowledges entries that MongoDB holds and deletes them from the
    /// stream, so Redis memory stays bounded by the backlog.
    pub(crate) async fn ack(&mut self, ids: &[String]) -> Result<(), QueueError> {
        if ids.is_empty() {
            return Ok(());
        }
        acknowledge(&mut redis::pipe(), ids)
            .query_async::<()>(&mut self.conn)
            .await
            .map_err(|e| self.err(e))
    }

    /// Removes this consumer from the group when it holds no entries, so
    /// pods that scaled away do not pile up in XINFO CONSUMERS. Returns
    /// whether it left. (DELCONSUMER drops a consumer's pending entries,
    /// hence the check; a stopped worker reads nothing new meanwhile.)
    pub(crate) async fn leave_group_if_idle(&mut self) -> Result<bool, QueueError> {
        let pending: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(STREAM)
            .arg(GROUP)
            .arg("-")
            .arg("+")
            .arg(1)
            .arg(&self.name)
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.err(e))?;
        if !pending.ids.is_empty() {
            return Ok(false);
        }
        redis::cmd("XGROUP")
            .arg("DELCONSUMER")
            .arg(STREAM)
            .arg(GROUP)
            .arg(&self.name)
            .query_async::<u64>(&mut self.conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(true)
    }

    /// Moves an entry to the dead-letter stream, atomically with its ack, so
    /// it is neither lost nor both dead and pending.
    pub(crate) async fn dead_letter(
        &mut self,
        id: &str,
        data: &[u8],
        reason: &str,
        deliveries: u64,
    ) -> Result<(), QueueError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("XADD")
            .arg(DEAD_LETTER)
            .arg("*")
            .arg("source_id")
            .arg(id)
            .arg(DATA_FIELD)
            .arg(data)
            .arg("reason")
            .arg(reason)
            .arg("deliveries")
            .arg(deliveries)
            .ignore();
        acknowledge(&mut pipe, &[id])
            .query_async::<()>(&mut self.conn)
            .await
            .map_err(|e| self.err(e))
    }
}
