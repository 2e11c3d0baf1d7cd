//! The ports `multivac` listens on by default; the operator opens the same
//! ones in the pods and points the probes and Services at them.
//!
//! Redis and MongoDB ports are not here: the app never assumes them, it takes
//! whole URLs from [`env::REDIS_URL`](crate::env::REDIS_URL) and
//! [`env::MONGODB_URI`](crate::env::MONGODB_URI).

/// `multivac server`: the API, `/healthz`, `/readyz` and `/metrics`.
pub const SERVER: u16 = 8080;
/// `multivac worker`: its `/healthz`, `/readyz` and `/metrics`.
pub const WORKER_METRICS: u16 = 9090;
