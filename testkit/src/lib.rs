//! What the real-server tests of the app (`app/tests/common`) and of the
//! operator (`operator/tests/common`, `operator/tests/scaling.rs`) share:
//! loopback ports, child processes, finding and starting Debian's
//! `redis-server` and FerretDB (SQLite), and the environment the `multivac`
//! binary runs in. Nothing is mocked; a missing server
//! is an error that says how to get it, never a skipped test.
//!
//! A dev-dependency only: nothing here ships in a binary.

mod ferretdb;
mod multivac;
mod process;
mod redis_server;

pub use ferretdb::{GET_FERRETDB, cache_dir, ferretdb, ferretdb_command, find_ferretdb};
pub use multivac::multivac_environment;
pub use process::{free_port, kill, on_path, spawn_listening, wait_listening};
pub use redis_server::{RedisConfig, RedisTls, redis_server, start_redis};
