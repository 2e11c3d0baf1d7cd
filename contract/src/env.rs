//! The environment variables `multivac` reads: its clap options take their
//! names from here and the operator builds the pods' environment and
//! ConfigMap from the same constants, so neither side can rename one alone.

/// Redis URL, with its password (the operator takes it from a Secret).
pub const REDIS_URL: &str = "MULTIVAC_REDIS_URL";
/// MongoDB connection string, with its credentials (from a Secret).
pub const MONGODB_URI: &str = "MULTIVAC_MONGODB_URI";
/// The CA certificates (PEM file) a `rediss://` Redis's certificate is checked
/// against instead of the public roots (the operator mounts a user's Secret).
pub const REDIS_CA_FILE: &str = "MULTIVAC_REDIS_CA_FILE";
/// The CA certificates (PEM file) for MongoDB over TLS; turns TLS on, like
/// `tls=true&tlsCAFile=` in the URI (the operator mounts a user's Secret).
pub const MONGODB_CA_FILE: &str = "MULTIVAC_MONGODB_CA_FILE";
/// MongoDB database name (from the ConfigMap).
pub const MONGODB_DATABASE: &str = "MULTIVAC_MONGODB_DATABASE";
/// `text` or `json` ([`LogFormat`](crate::LogFormat); the operator sets `json`).
pub const LOG_FORMAT: &str = "MULTIVAC_LOG_FORMAT";
/// The log filter, as `tracing-subscriber` reads it (default `info`).
pub const LOG_FILTER: &str = "RUST_LOG";
/// The Pod's name (the operator sets it from `metadata.name`): the worker's
/// default consumer name.
pub const POD_NAME: &str = "POD_NAME";

/// `multivac server`: listen address of the API (the public port).
pub const BIND: &str = "MULTIVAC_BIND";
/// `multivac server`: also serve `/zzz` on the public port (`true`/`false`).
pub const PUBLIC_ZZZ: &str = "MULTIVAC_PUBLIC_ZZZ";
/// `multivac server`: concepts needed for a meaningful answer (from the ConfigMap).
pub const REQUIRED_CONCEPTS: &str = "MULTIVAC_REQUIRED_CONCEPTS";
/// `multivac server`: largest accepted datum in bytes.
pub const MAX_DATA_BYTES: &str = "MULTIVAC_MAX_DATA_BYTES";
/// `multivac server`: bearer token POST needs (from the user's Secret).
pub const API_TOKEN: &str = "MULTIVAC_API_TOKEN";
/// `multivac server`: how long knowledge counts are reused, in milliseconds.
pub const STATS_TTL_MS: &str = "MULTIVAC_STATS_TTL_MS";
/// `multivac server`: upper bound of one request, in milliseconds.
pub const REQUEST_TIMEOUT_MS: &str = "MULTIVAC_REQUEST_TIMEOUT_MS";
/// Both subcommands: how long a Redis or MongoDB call may take, in milliseconds.
pub const BACKEND_TIMEOUT_MS: &str = "MULTIVAC_BACKEND_TIMEOUT_MS";
/// `multivac server`: backlog (undelivered + pending) past which POST answers
/// 503 `backlog_full` (the operator sets it from `spec.server.maxBacklog`).
pub const MAX_BACKLOG: &str = "MULTIVAC_MAX_BACKLOG";
/// `multivac server`: requests served at once; more are refused at once
/// with 503 `overloaded`.
pub const MAX_IN_FLIGHT: &str = "MULTIVAC_MAX_IN_FLIGHT";
/// `multivac server`: after SIGTERM, how long it keeps serving while
/// unready, in milliseconds (the operator sets it from
/// `spec.server.drainSeconds`).
pub const DRAIN_MS: &str = "MULTIVAC_DRAIN_MS";

/// Both subcommands: listen address of the internal port (`/metrics`,
/// `/healthz`, `/readyz`, and the server's `/zzz`).
pub const METRICS_BIND: &str = "MULTIVAC_METRICS_BIND";
/// `multivac worker`: its name in the consumer group.
pub const CONSUMER_NAME: &str = "MULTIVAC_CONSUMER_NAME";
/// `multivac worker`: entries per read and per bulk write.
pub const BATCH_SIZE: &str = "MULTIVAC_BATCH_SIZE";
/// `multivac worker`: data bytes per bulk write.
pub const BATCH_BYTES: &str = "MULTIVAC_BATCH_BYTES";
/// `multivac worker`: how long one blocking read waits, in milliseconds.
pub const BLOCK_MS: &str = "MULTIVAC_BLOCK_MS";
/// `multivac worker`: visibility timeout before entries are reclaimed, in milliseconds.
pub const CLAIM_IDLE_MS: &str = "MULTIVAC_CLAIM_IDLE_MS";
/// `multivac worker`: deliveries before an entry is dead-lettered.
pub const MAX_DELIVERIES: &str = "MULTIVAC_MAX_DELIVERIES";
/// `multivac worker`: how long a stop may wait for the batch in flight, in milliseconds.
pub const SHUTDOWN_TIMEOUT_MS: &str = "MULTIVAC_SHUTDOWN_TIMEOUT_MS";
