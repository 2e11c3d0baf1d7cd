//! The `multivac` binary: `multivac server` or `multivac worker`.

use std::process::ExitCode;

use clap::Parser;
use multivac::config::{Cli, Command};
use multivac::{http, shutdown, telemetry, worker};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => {
            telemetry::init(args.common.log_format);
            http::run(args, shutdown::on_signals()).await
        }
        Command::Worker(args) => {
            telemetry::init(args.common.log_format);
            worker::run(args, shutdown::on_signals()).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
