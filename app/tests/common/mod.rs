//! Real servers for the integration tests: Debian's redis-server, FerretDB
//! (or a real mongod) and the `multivac` binary itself, each on a free
//! loopback port and stopped when dropped. Nothing is mocked.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use multivac::{Queue, Store};
pub use multivac_testkit::free_port;
use multivac_testkit::{
    RedisConfig, kill, multivac_environment, on_path, spawn_listening, start_redis, wait_listening,
};

pub mod tls;
use tempfile::TempDir;

/// A unique name for this test's database and consumers.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A redis-server of our own.
pub struct Redis {
    child: Child,
    pub port: u16,
    dir: TempDir,
    persistent: bool,
    password: Option<String>,
    /// More configuration, as `redis-server` arguments.
    extra: Vec<String>,
}

impl Redis {
    fn spawn(
        port: u16,
        dir: &Path,
        persistent: bool,
        password: Option<&str>,
        extra: &[String],
    ) -> Child {
        let config = RedisConfig {
            password,
            persistent,
            extra,
            ..RedisConfig::default()
        };
        start_redis(port, dir, &config)
    }

    /// An in-memory Redis.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// A Redis that writes every command to its append-only file before
    /// answering, so a restart shows exactly what was accepted.
    pub fn start_persistent() -> Self {
        Self::start_with(true)
    }

    /// A Redis that requires `password` (AUTH).
    pub fn start_with_password(password: &str) -> Self {
        Self::start_full(false, Some(password), &[])
    }

    /// An in-memory Redis with more configuration, e.g.
    /// `["--maxmemory", "4mb"]`.
    pub fn start_configured(extra: &[&str]) -> Self {
        Self::start_full(false, None, extra)
    }

    /// A persistent Redis (see [`Redis::start_persistent`]) with more
    /// configuration.
    pub fn start_persistent_configured(extra: &[&str]) -> Self {
        Self::start_full(true, None, extra)
    }

    fn start_with(persistent: bool) -> Self {
        Self::start_full(persistent, None, &[])
    }

    fn start_full(persistent: bool, password: Option<&str>, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        let child = Self::spawn(port, dir.path(), persistent, password, &extra);
        Redis {
            child,
            port,
            dir,
            persistent,
            password: password.map(str::to_owned),
            extra,
        }
    }

    /// Its data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Kills it (the port then refuses connections).
    pub fn stop(&mut self) {
        kill(&mut self.child);
    }

    /// Starts it again on the same port with the same data directory.
    pub fn restart(&mut self) {
        self.child = Self::spawn(
            self.port,
            self.dir.path(),
            self.persistent,
            self.password.as_deref(),
            &self.extra,
        );
    }

    /// A queue handle for assertions.
    pub fn queue(&self) -> Queue {
        Queue::connect(&self.url(), Duration::from_secs(5)).expect("redis url")
    }

    /// Entries delivered to `consumer` and not acknowledged.
    pub async fn pending_of(&self, consumer: &str) -> u64 {
        let mut conn = self.conn().await;
        let reply: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
            .arg("multivac:data")
            .arg("multivac-workers")
            .arg("-")
            .arg("+")
            .arg(100_000)
            .arg(consumer)
            .query_async(&mut conn)
            .await
            .expect("XPENDING");
        reply.ids.len() as u64
    }

    /// A plain Redis connection for assertions about the stream itself.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("connecting to the test redis")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

enum MongoKind {
    External,
    FerretDb(PathBuf),
    Mongod(PathBuf),
}

/// A MongoDB-compatible server: MULTIVAC_TEST_MONGODB_URI when set (not
/// stoppable), else a mongod on PATH, else FerretDB with its SQLite backend.
pub struct Mongo {
    kind: MongoKind,
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    uri: String,
    pub database: String,
}

impl Mongo {
    /// A server for this test, with a database of its own.
    pub fn start() -> Self {
        if let Ok(uri) = std::env::var("MULTIVAC_TEST_MONGODB_URI") {
            return Mongo {
                kind: MongoKind::External,
                child: None,
                port: 0,
                dir: tempfile::tempdir().expect("temp dir"),
                uri,
                database: unique("multivac_test"),
            };
        }
        Self::start_owned()
    }

    /// A server this test owns and can stop and restart.
    pub fn start_owned() -> Self {
        let kind = match on_path("mongod") {
            Some(mongod) => MongoKind::Mongod(mongod),
            None => MongoKind::FerretDb(Self::ferretdb()),
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut mongo = Mongo {
            kind,
            child: None,
            port,
            dir,
            uri: format!("mongodb://127.0.0.1:{port}"),
            database: unique("multivac_test"),
        };
        mongo.restart();
        mongo
    }

    fn ferretdb() -> PathBuf {
        multivac_testkit::find_ferretdb().unwrap_or_else(|| {
            panic!(
                "no MongoDB-compatible server: {}; a `mongod` on PATH or MULTIVAC_TEST_MONGODB_URI \
                 also work",
                multivac_testkit::GET_FERRETDB
            )
        })
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Kills the server (connections are refused until [`Mongo::restart`]).
    pub fn stop(&mut self) {
        assert!(
            !matches!(self.kind, MongoKind::External),
            "cannot stop the server behind MULTIVAC_TEST_MONGODB_URI; use Mongo::start_owned()"
        );
        if let Some(mut child) = self.child.take() {
            kill(&mut child);
        }
    }

    /// Starts the server again on the same port with the same data.
    pub fn restart(&mut self) {
        let port = self.port.to_string();
        let mut cmd = match &self.kind {
            MongoKind::External => return,
            MongoKind::FerretDb(bin) => {
                let mut cmd = multivac_testkit::ferretdb_command(bin, self.dir.path());
                cmd.arg(format!("--listen-addr=127.0.0.1:{port}"));
                cmd
            }
            MongoKind::Mongod(bin) => {
                let data = self.dir.path().join("data");
                std::fs::create_dir_all(&data).expect("mongo data dir");
                let mut cmd = Command::new(bin);
                cmd.args(["--port", &port, "--bind_ip", "127.0.0.1", "--dbpath"])
                    .arg(&data);
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
                cmd
            }
        };
        let mut child = cmd.spawn().expect("starting the MongoDB-compatible server");
        wait_listening(
            self.port,
            "the MongoDB-compatible server",
            &mut child,
            Duration::from_secs(30),
        );
        self.child = Some(child);
    }

    /// A store handle on this test's database, for assertions.
    pub async fn store(&self) -> Store {
        Store::connect(&self.uri, &self.database, Duration::from_secs(5))
            .await
            .expect("mongodb uri")
    }
}

impl Drop for Mongo {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child);
        }
    }
}

/// A running `multivac server` or `multivac worker` process.
pub struct Multivac {
    child: Child,
    /// The HTTP port (server) or the metrics port (worker).
    pub port: u16,
}

impl Multivac {
    fn spawn(
        subcommand: &str,
        redis: &str,
        mongo: &Mongo,
        port: u16,
        env: &[(&str, &str)],
    ) -> Self {
        Self::spawn_wrapped(subcommand, redis, mongo, port, env, &[])
    }

    /// The binary run by `wrapper` (a program and its arguments, the
    /// binary's path and arguments appended), e.g. to limit its memory.
    fn spawn_wrapped(
        subcommand: &str,
        redis: &str,
        mongo: &Mongo,
        port: u16,
        env: &[(&str, &str)],
        wrapper: &[String],
    ) -> Self {
        let binary = env!("CARGO_BIN_EXE_multivac");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(binary);
                cmd
            }
            None => Command::new(binary),
        };
        cmd.arg(subcommand);
        multivac_environment(&mut cmd, redis, mongo.uri(), &mongo.database, port)
            .env("RUST_LOG", "warn,multivac=info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let what = format!("multivac {subcommand}");
        let child = spawn_listening(&mut cmd, port, &what, Duration::from_secs(20));
        Multivac { child, port }
    }

    /// `multivac server` with extra environment.
    pub fn server(redis: &Redis, mongo: &Mongo, env: &[(&str, &str)]) -> Self {
        Self::spawn("server", &redis.url(), mongo, free_port(), env)
    }

    /// `multivac worker` named `name` with extra environment.
    pub fn worker(redis: &Redis, mongo: &Mongo, name: &str, env: &[(&str, &str)]) -> Self {
        Self::worker_wrapped(redis, mongo, name, env, &[])
    }

    /// [`Multivac::worker`] run by `wrapper` (see `spawn_wrapped`).
    pub fn worker_wrapped(
        redis: &Redis,
        mongo: &Mongo,
        name: &str,
        env: &[(&str, &str)],
        wrapper: &[String],
    ) -> Self {
        let mut all = vec![("MULTIVAC_CONSUMER_NAME", name)];
        all.extend_from_slice(env);
        Self::spawn_wrapped("worker", &redis.url(), mongo, free_port(), &all, wrapper)
    }

    /// The exit status if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("waiting for multivac")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGSTOP: frozen in place, holding whatever it holds.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`Multivac::freeze`].
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill9(&mut self) {
        kill(&mut self.child);
    }

    /// SIGTERM, then the exit status (panics after `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -TERM failed");
        self.wait(timeout)
    }

    /// Its exit status (panics after `timeout`).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for multivac") {
                return status;
            }
            assert!(
                start.elapsed() < timeout,
                "multivac did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A counter or gauge from this process's /metrics (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = reqwest::get(self.url("/metrics"))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (key, value) = l.split_once(' ')?;
                (key == name).then(|| value.trim().parse().ok()).flatten()
            })
            .unwrap_or(0.0)
    }
}

impl Drop for Multivac {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// Polls `check` until it returns Some, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
