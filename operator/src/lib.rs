//! MultiVAC operator: reconciles `MultiVac` resources (multivac.io/v1alpha1)
//! into a running MultiVAC and scales its workers from the Redis backlog.

mod cli;
pub mod context;
pub mod controller;
pub mod crd;
pub mod error;
pub mod http;
pub mod leader;
pub mod reconcile;
pub mod resources;
pub mod scaling;
pub mod telemetry;

pub use cli::Cli;
pub use context::Context;
pub use crd::{MultiVac, MultiVacSpec, MultiVacStatus};
pub use error::{Error, Result};
