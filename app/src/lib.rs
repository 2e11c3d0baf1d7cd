//! MultiVAC: an HTTP server that accepts data into a Redis Stream and workers
//! that learn concepts from it into MongoDB, until the question of entropy has
//! a meaningful answer.
//!
//! The binary (`multivac server`, `multivac worker`) is a thin shell around
//! this library; the library is public so integration tests can drive the same
//! queue and store code the binary runs.

pub mod config;
pub mod http;
pub mod learn;
pub mod metrics;
pub mod queue;
pub mod redact;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod worker;

pub use config::Cli;

/// The only question MultiVAC answers.
pub const QUESTION: &str = "How can the entropy of the universe be reversed?";
/// The answer until enough concepts have been learned.
pub const INSUFFICIENT: &str = "INSUFFICIENT DATA FOR MEANINGFUL ANSWER.";
/// The answer once MultiVAC knows enough.
pub const ENLIGHTENED: &str = "LET THERE BE LIGHT!";

/// Why a subcommand could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot listen on {addr}: {source}; pick a free address with MULTIVAC_BIND / MULTIVAC_METRICS_BIND"
    )]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving HTTP failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error(transparent)]
    Queue(#[from] queue::QueueError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}
