//! The `multivac` binary, as both crates' tests run it.

use std::process::{Command, Stdio};

/// Sets `cmd` (the `multivac` binary with its subcommand, or a wrapper
/// running it) up as the tests run it: a clean environment (PATH only, so a
/// developer's own MULTIVAC_* variables never leak in), these stores, HTTP and
/// metrics on 127.0.0.1:`port`, stdout discarded and stderr too unless
/// MULTIVAC_TEST_SHOW_LOGS is set. The caller adds RUST_LOG and the rest.
pub fn multivac_environment<'c>(
    cmd: &'c mut Command,
    redis_url: &str,
    mongodb_uri: &str,
    database: &str,
    port: u16,
) -> &'c mut Command {
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("MULTIVAC_REDIS_URL", redis_url)
        .env("MULTIVAC_MONGODB_URI", mongodb_uri)
        .env("MULTIVAC_MONGODB_DATABASE", database)
        .env("MULTIVAC_BIND", format!("127.0.0.1:{port}"))
        .env("MULTIVAC_METRICS_BIND", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null());
    if std::env::var_os("MULTIVAC_TEST_SHOW_LOGS").is_none() {
        cmd.stderr(Stdio::null());
    }
    cmd
}
