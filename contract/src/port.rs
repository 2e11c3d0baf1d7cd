//! The ports `multivac` listens on by default; the operator opens the same
//! ones in the pods and points the probes and Services at them.
//!
//! Redis and MongoDB ports are not here: the app never assumes them, it takes
//! whole URLs from [`env::REDIS_URL`](crate::env::REDIS_URL) and
//! [`env::MONGODB_URI`](crate::env::MONGODB_URI).

/// `multivac server`: its public port, the API (and `/healthz`, `/readyz`):
/// what the Service and the Ingress expose.
pub const SERVER: u16 = 8080;
/// `multivac server`: its internal port, `/metrics` and `/zzz` (and
/// `/healthz`, `/readyz`): never in the Service or the Ingress, so the
/// figures stay inside the cluster unless `/zzz` is asked for publicly.
pub const SERVER_METRICS: u16 = 9090;
/// `multivac worker`: its `/healthz`, `/readyz` and `/metrics`.
pub const WORKER_METRICS: u16 = 9090;
