//! The HTTP paths the app serves and the operator (probes), the docs and the
//! end-to-end checks call.

/// Liveness: the process runs (`{"status": "alive"}`), nothing else checked.
pub const HEALTHZ: &str = "/healthz";
/// Readiness: every dependency answers ([`Readiness`](crate::Readiness)).
pub const READYZ: &str = "/readyz";
/// Prometheus text ([`encode_metrics`](crate::encode_metrics)).
pub const METRICS: &str = "/metrics";
/// `multivac server`: the welcome line.
pub const WELCOME: &str = "/";
/// `multivac server`: the question and its answer.
pub const QUESTION: &str = "/multivac";
/// `multivac server`: POST data here to feed MultiVAC.
pub const DATA: &str = "/multivac/data";
/// `multivac server`: MultiVAC's state (`asleep`, `learning`, `enlightened`).
pub const ZZZ: &str = "/zzz";
