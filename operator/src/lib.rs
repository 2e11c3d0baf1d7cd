//! MultiVAC operator: reconciles `MultiVac` resources (multivac.io/v1alpha1)
//! into a running MultiVAC and scales its workers from the Redis backlog.
//!
//! Every module is private; the crate root exports what the
//! `multivac-operator` binary, `cargo xtask` and the integration tests use.

mod cache;
mod cli;
mod cluster;
mod context;
mod controller;
mod crd;
mod credentials;
mod error;
#[cfg(test)]
mod fake_api;
mod fence;
mod http;
mod kind;
mod leader;
mod reconcile;
mod resources;
mod scaling;
mod telemetry;
mod validated;

/// The command line of `multivac-operator` (read by `cargo xtask generate` for the docs).
pub use cli::Cli;
/// Shared by the controller, the scaler and the HTTP endpoint; `main` builds it.
pub use context::Context;
/// Runs the controller and the scaler (after leader election, if any).
pub use controller::run;
/// The custom resource; [`custom_resource_definition`] is the CRD that
/// `cargo xtask generate` writes (`MultiVac::crd()` with `spec` optional).
pub use crd::{MultiVac, MultiVacSpec, MultiVacStatus, custom_resource_definition};
pub use error::{Error, Result};
/// Writes only while the leader Lease is provably held.
pub use fence::{Fence, FenceLayer, Fenced};
/// `/metrics`, `/healthz` and `/readyz`.
pub use http::router;
/// Leader election on a Lease.
pub use leader::{LeaderConfig, Leadership};
/// The backlog read with a cached connection, for the tests against a real redis-server.
pub use scaling::backlog::BacklogReader;
