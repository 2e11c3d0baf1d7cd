//! MultiVAC: an HTTP server that accepts data into a Redis Stream and workers
//! that learn concepts from it into MongoDB, until the question of entropy has
//! a meaningful answer.
//!
//! The binary (`multivac server`, `multivac worker`) is [`Cli`] plus [`run`].
//! The queue and store handles are public too, so the integration tests can
//! set up and inspect Redis and MongoDB with the same code the binary runs.
//! What the app shares with the operator (Redis names, the backlog,
//! environment variables, ports, paths, telemetry) is in `multivac_contract`.

mod auth;
mod config;
mod http;
mod intake;
mod knowledge;
mod learn;
mod metrics;
mod queue;
mod redact;
mod store;
mod worker;

use std::net::SocketAddr;

use multivac_contract::{env, init_logging, on_signals};
use tokio::net::TcpListener;

pub use config::Cli;
use config::Command;
pub use multivac_contract::Backlog;
pub use queue::{Consumer, Entry, Heartbeat, Payload, Queue, QueueError};
pub use store::{Knowledge, Learned, Rejected, Store, StoreError};

/// Why a subcommand could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listen address is taken or not ours.
    #[error(
        "cannot listen on {addr}: {source}; pick a free address with {bind} / {metrics_bind}",
        bind = env::BIND,
        metrics_bind = env::METRICS_BIND
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server stopped with an error.
    #[error("serving HTTP failed: {0}")]
    Serve(#[source] std::io::Error),
    /// Redis could not be set up (an invalid URL; a Redis that is down is
    /// retried, not fatal).
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// MongoDB could not be set up (an invalid URI).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A CA file named by the environment cannot be read.
    #[error("cannot read {var} {path}: {source}; mount the CA there or unset {var}", path = path.display())]
    CaFile {
        var: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Runs what the command line asks for (`multivac server` or `multivac
/// worker`) with logging set up, until SIGTERM or Ctrl-C.
pub async fn run(cli: Cli) -> Result<(), Error> {
    init_logging(cli.command.common().log_format, "info");
    match cli.command {
        Command::Server(args) => http::run(args, on_signals()).await,
        Command::Worker(args) => worker::run(args, on_signals()).await,
    }
}

/// A listener on `addr`, or an error that says which variable moves it.
async fn listen(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}
