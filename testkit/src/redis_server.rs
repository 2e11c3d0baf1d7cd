//! Debian's `redis-server`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{on_path, wait_listening};

/// The `redis-server` to run: MULTIVAC_TEST_REDIS_SERVER (what `make test`
/// sets), else the one on PATH. Panics saying how to get it.
pub fn redis_server() -> PathBuf {
    if let Some(path) = std::env::var_os("MULTIVAC_TEST_REDIS_SERVER") {
        return PathBuf::from(path);
    }
    on_path("redis-server").unwrap_or_else(|| {
        panic!(
            "redis-server not found: run `bash hack/deps/redis.sh` (apt-get install redis-server) \
             or set MULTIVAC_TEST_REDIS_SERVER, or run `make test`"
        )
    })
}

/// What the tests vary between the redis-servers they start.
#[derive(Default)]
pub struct RedisConfig<'a> {
    /// `requirepass`: clients must AUTH with it.
    pub password: Option<&'a str>,
    /// Hands the password over as configuration on stdin (`redis-server -`),
    /// as the operator's managed Redis gets it, rather than on the command line.
    pub password_on_stdin: bool,
    /// Every command written to the append-only file before the answer
    /// (`appendfsync always`), so a restart on the same directory shows
    /// exactly what was accepted; otherwise the data lives in memory only.
    pub persistent: bool,
    /// More `redis-server` arguments, e.g. `["--maxmemory", "4mb"]`.
    pub extra: &'a [String],
    /// Speaks only TLS on the port (`--port 0 --tls-port`), for the tests of
    /// `rediss://`.
    pub tls: Option<RedisTls<'a>>,
}

impl<'a> RedisConfig<'a> {
    /// A server that speaks only TLS, on `cert` and `key` signed by `ca`, and
    /// requires `password`.
    pub fn tls(cert: &'a Path, key: &'a Path, ca: &'a Path, password: &'a str) -> Self {
        RedisConfig {
            password: Some(password),
            tls: Some(RedisTls { cert, key, ca }),
            ..RedisConfig::default()
        }
    }
}

/// The PEM files of a redis-server that speaks only TLS. Clients are not
/// asked for certificates: the password authenticates them.
pub struct RedisTls<'a> {
    /// The server's certificate, signed by `ca` for 127.0.0.1.
    pub cert: &'a Path,
    pub key: &'a Path,
    pub ca: &'a Path,
}

/// Starts a redis-server on 127.0.0.1:`port` with its files in `dir` (no RDB
/// snapshots) and returns once it answers PING: listening is not ready,
/// since while it loads its append-only file Redis answers LOADING. A TLS
/// server is ready once it listens (it starts empty, and a PING would need
/// the CA).
pub fn start_redis(port: u16, dir: &Path, config: &RedisConfig) -> Child {
    let mut cmd = Command::new(redis_server());
    if config.password_on_stdin {
        cmd.arg("-").stdin(Stdio::piped());
    }
    let port_arg = port.to_string();
    match &config.tls {
        None => cmd.args(["--port", &port_arg]),
        Some(tls) => cmd
            .args(["--port", "0", "--tls-port", &port_arg])
            .arg("--tls-cert-file")
            .arg(tls.cert)
            .arg("--tls-key-file")
            .arg(tls.key)
            .arg("--tls-ca-cert-file")
            .arg(tls.ca)
            .args(["--tls-auth-clients", "no"]),
    };
    cmd.args(["--bind", "127.0.0.1", "--save", ""])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let (Some(password), false) = (config.password, config.password_on_stdin) {
        cmd.args(["--requirepass", password]);
    }
    if config.persistent {
        cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
    } else {
        cmd.args(["--appendonly", "no"]);
    }
    cmd.args(config.extra);
    let mut child = cmd
        .spawn()
        .expect("starting redis-server (Debian's build, which has TLS)");
    if config.password_on_stdin {
        // Dropping stdin ends the configuration.
        let mut stdin = child.stdin.take().expect("redis-server's stdin");
        if let Some(password) = config.password {
            writeln!(stdin, "requirepass {password}").expect("config to redis-server");
        }
    }
    wait_listening(port, "redis-server", &mut child, Duration::from_secs(30));
    if config.tls.is_some() {
        return child;
    }
    let url = match config.password {
        Some(password) => format!("redis://:{password}@127.0.0.1:{port}"),
        None => format!("redis://127.0.0.1:{port}"),
    };
    let client = redis::Client::open(url).expect("redis url");
    let start = Instant::now();
    loop {
        let pong = client
            .get_connection_with_timeout(Duration::from_secs(1))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
        match pong {
            Ok(_) => return child,
            Err(e) if start.elapsed() > Duration::from_secs(20) => {
                panic!("redis-server on port {port} is not ready: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
