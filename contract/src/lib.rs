//! What the MultiVAC app (`multivac server`, `multivac worker`) and the
//! operator must agree on, written once so that they agree by construction:
//!
//! - the Redis layout: stream, consumer group, dead-letter stream, heartbeat
//!   keys and the data field ([`STREAM`], [`GROUP`], ...), and how an entry
//!   leaves the stream ([`acknowledge`]);
//! - what "work waiting" means ([`Backlog`]) and how it is read from Redis
//!   ([`read_backlog`]): the app's `/zzz` and `/metrics` and the operator's
//!   scaler use the same definition and the same commands;
//! - the names the operator wires into the pods: environment variables
//!   ([`env`]), keys of the generated credentials Secret ([`secret_key`]),
//!   ports ([`port`]) and HTTP paths ([`path`]);
//! - how a Redis URL becomes a client ([`redis_client`]): `rediss://` with
//!   the public roots or a private CA, the same in the app and the scaler;
//! - what every process does the same way: log setup ([`init_logging`]),
//!   Prometheus text ([`encode_metrics`]), stop on SIGTERM ([`on_signals`]),
//!   `/healthz`, `/readyz` and `/metrics` ([`probe_routes`]) and serving HTTP
//!   ([`serve`], with a drain: [`serve_with_drain`]);
//! - whether a Redis may evict the stream ([`EvictionPolicy`],
//!   [`read_eviction_policy`]), which both the app and the scaler report.

mod backlog;
pub mod env;
mod eviction;
mod http;
pub mod path;
pub mod port;
mod redis_client;
pub mod secret_key;
mod shutdown;
mod stream;
mod telemetry;

pub use backlog::{Backlog, BacklogError, BacklogReading, read_backlog};
pub use eviction::{EvictionPolicy, read_eviction_policy};
pub use http::{
    Drain, Probes, Readiness, health_routes, http_service, metrics_route, probe_routes, serve,
    serve_with_drain,
};
pub use redis_client::{RedisClientError, redis_client};
pub use shutdown::{Shutdown, ShutdownTrigger, channel as shutdown_channel, on_signals};
pub use stream::{DATA_FIELD, DEAD_LETTER, GROUP, HEARTBEAT_PREFIX, STREAM, acknowledge};
pub use telemetry::{LogFormat, METRICS_CONTENT_TYPE, encode_metrics, init_logging};
