//! Command line and environment: every option has a flag and a `MULTIVAC_*`
//! variable, so the same binary is configured by hand or by the operator.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use multivac_contract::{LogFormat, env, port};

use crate::auth::ApiToken;

/// `--batch-bytes` by default: see `hack/bench/app.sh` for the worker's peak
/// memory on full batches of 64 KiB data.
const DEFAULT_BATCH_BYTES: usize = 4 << 20;

// The whole command line of the `multivac` binary: parse it with
// `clap::Parser` and hand it to `multivac::run`; generators read its options
// with `clap::CommandFactory`. (The doc comment below is clap's `about`.)
/// MultiVAC: learns from data until it can answer how the entropy of the
/// universe can be reversed.
#[derive(Debug, Parser)]
#[command(name = "multivac", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// What this process is.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve the HTTP API: the question, data intake, /zzz, health and metrics.
    Server(ServerArgs),
    /// Consume the queue and learn concepts into MongoDB.
    Worker(WorkerArgs),
}

impl Command {
    /// The options every subcommand has.
    pub(crate) fn common(&self) -> &CommonArgs {
        match self {
            Command::Server(args) => &args.common,
            Command::Worker(args) => &args.common,
        }
    }
}

/// Options both subcommands need.
#[derive(Clone, Debug, Args)]
pub(crate) struct CommonArgs {
    /// Redis URL; may carry a password: redis://:PASSWORD@HOST:6379/0 (never logged).
    #[arg(
        long,
        env = env::REDIS_URL,
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub(crate) redis_url: String,

    /// MongoDB connection string; may carry credentials and authSource (never logged).
    #[arg(
        long,
        env = env::MONGODB_URI,
        default_value = "mongodb://127.0.0.1:27017",
        hide_env_values = true
    )]
    pub(crate) mongodb_uri: String,

    /// MongoDB database holding the `concepts` and `data` collections.
    #[arg(long, env = env::MONGODB_DATABASE, default_value = "multivac")]
    pub(crate) mongodb_database: String,

    /// Log format; the level is set by RUST_LOG (default: info).
    #[arg(long, env = env::LOG_FORMAT, value_enum, default_value = "text")]
    pub(crate) log_format: LogFormat,

    /// PEM file of the CA that signed a rediss:// Redis's certificate; unset:
    /// the public (Mozilla) roots built into the binary.
    #[arg(long, env = env::REDIS_CA_FILE)]
    pub(crate) redis_ca_file: Option<PathBuf>,

    /// PEM file of the CA that signed MongoDB's certificate; turns TLS on
    /// (as tls=true&tlsCAFile=FILE in the URI would).
    #[arg(long, env = env::MONGODB_CA_FILE)]
    pub(crate) mongodb_ca_file: Option<PathBuf>,
}

impl CommonArgs {
    /// The Redis CA's certificates, read once at start: a missing or
    /// unreadable file stops the process with its name instead of failing
    /// every connection later.
    pub(crate) fn redis_ca(&self) -> Result<Option<Vec<u8>>, crate::Error> {
        self.redis_ca_file
            .as_deref()
            .map(|path| read_ca(env::REDIS_CA_FILE, path))
            .transpose()
    }

    /// The MongoDB CA file, checked readable at start (the driver reads it
    /// again for every new connection).
    pub(crate) fn mongodb_ca(&self) -> Result<Option<&Path>, crate::Error> {
        let Some(path) = self.mongodb_ca_file.as_deref() else {
            return Ok(None);
        };
        read_ca(env::MONGODB_CA_FILE, path).map(|_| Some(path))
    }
}

fn read_ca(var: &'static str, path: &Path) -> Result<Vec<u8>, crate::Error> {
    std::fs::read(path).map_err(|source| crate::Error::CaFile {
        var,
        path: path.to_owned(),
        source,
    })
}

/// `multivac server` options.
#[derive(Clone, Debug, Args)]
pub(crate) struct ServerArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,

    /// Address the HTTP API listens on (the public port; /healthz and /readyz too).
    #[arg(long, env = env::BIND, default_value_t = listen_on(port::SERVER))]
    pub(crate) bind: SocketAddr,

    /// Address of the server's internal port: /metrics and /zzz (and /healthz,
    /// /readyz). The same address as the API's serves everything on one port.
    #[arg(long, env = env::METRICS_BIND, default_value_t = listen_on(port::SERVER_METRICS))]
    pub(crate) metrics_bind: SocketAddr,

    /// Also serve /zzz on the public port (the API's), not only on the internal one.
    #[arg(long, env = env::PUBLIC_ZZZ, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub(crate) public_zzz: bool,

    /// Distinct concepts MultiVAC must learn before its answer is meaningful.
    #[arg(long, env = env::REQUIRED_CONCEPTS, default_value_t = 100)]
    pub(crate) required_concepts: u64,

    /// Largest accepted `data` value in bytes (UTF-8); larger gets 413.
    #[arg(long, env = env::MAX_DATA_BYTES, default_value_t = 65536)]
    pub(crate) max_data_bytes: usize,

    /// Bearer token required by POST /multivac/data; unset leaves POST open.
    /// Surrounding whitespace is trimmed (a Secret made with --from-file ends
    /// with a newline); an empty or blank token refuses to start.
    #[arg(long, env = env::API_TOKEN, hide_env_values = true, value_parser = ApiToken::parse)]
    pub(crate) api_token: Option<ApiToken>,

    /// How long the knowledge counts read from MongoDB are reused, in
    /// milliseconds; bounds the count queries to one per period under load.
    #[arg(long, env = env::STATS_TTL_MS, default_value_t = 250)]
    pub(crate) stats_ttl_ms: u64,

    /// Upper bound for one request, in milliseconds; slower requests get 503
    /// `timeout` with Retry-After.
    #[arg(long, env = env::REQUEST_TIMEOUT_MS, default_value_t = 10_000)]
    pub(crate) request_timeout_ms: u64,

    /// Backlog (undelivered + pending entries) at which POST answers 503
    /// `backlog_full` with Retry-After; 0 = no bound but Redis' maxmemory.
    /// Read from Redis at most every 200 ms and shared by all requests.
    #[arg(long, env = env::MAX_BACKLOG, default_value_t = 0)]
    pub(crate) max_backlog: u64,

    /// Requests served at once (probes and /metrics aside); more are refused
    /// at once with 503 `overloaded` and Retry-After instead of queueing.
    #[arg(long, env = env::MAX_IN_FLIGHT, default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_in_flight: u32,

    /// After SIGTERM, how long the server keeps serving while /readyz
    /// answers 503 `draining`, in milliseconds, so load balancers stop
    /// sending first; then it finishes the requests in flight and exits.
    #[arg(long, env = env::DRAIN_MS, default_value_t = 0)]
    pub(crate) drain_ms: u64,

    /// How long Redis and MongoDB calls may take before they count as
    /// unreachable, in milliseconds.
    #[arg(long, env = env::BACKEND_TIMEOUT_MS, default_value_t = 2_000)]
    pub(crate) backend_timeout_ms: u64,
}

/// `multivac worker` options.
#[derive(Clone, Debug, Args)]
pub(crate) struct WorkerArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,

    /// Address of the worker's /metrics, /healthz and /readyz.
    #[arg(long, env = env::METRICS_BIND, default_value_t = listen_on(port::WORKER_METRICS))]
    pub(crate) metrics_bind: SocketAddr,

    /// Consumer name in the Redis consumer group; default: POD_NAME, else the hostname.
    #[arg(long, env = env::CONSUMER_NAME)]
    pub(crate) consumer_name: Option<String>,

    /// Entries read from the stream at once and written to MongoDB in one bulk write.
    #[arg(long, env = env::BATCH_SIZE, default_value_t = 512)]
    pub(crate) batch_size: usize,

    /// Data bytes per read and per bulk write to MongoDB: a read asks for
    /// about this much (by the largest entry of the last read, at most
    /// --batch-size entries), a larger read is stored in several bulk writes
    /// (each at least one entry). The default keeps a worker under 60% of a
    /// 256Mi memory limit with 64 KiB data.
    #[arg(long, env = env::BATCH_BYTES, default_value_t = DEFAULT_BATCH_BYTES)]
    pub(crate) batch_bytes: usize,

    /// How long one blocking read waits for new entries, in milliseconds;
    /// also the longest a stop request waits for the read to return.
    #[arg(long, env = env::BLOCK_MS, default_value_t = 1_000)]
    pub(crate) block_ms: u64,

    /// Visibility timeout in milliseconds: entries delivered to a consumer and
    /// not acknowledged for this long are reclaimed by another worker.
    #[arg(long, env = env::CLAIM_IDLE_MS, default_value_t = 30_000)]
    pub(crate) claim_idle_ms: u64,

    /// Deliveries after which a reclaimed entry goes to the dead-letter
    /// stream `multivac:data:dead` instead of being retried (only while
    /// MongoDB is reachable, so an outage never dead-letters good data).
    #[arg(long, env = env::MAX_DELIVERIES, default_value_t = 5)]
    pub(crate) max_deliveries: u64,

    /// On SIGTERM, how long the in-flight batch may keep retrying before the
    /// worker exits and leaves it to the others, in milliseconds.
    #[arg(long, env = env::SHUTDOWN_TIMEOUT_MS, default_value_t = 20_000)]
    pub(crate) shutdown_timeout_ms: u64,

    /// How long Redis and MongoDB calls may take before they count as failed,
    /// in milliseconds.
    #[arg(long, env = env::BACKEND_TIMEOUT_MS, default_value_t = 5_000)]
    pub(crate) backend_timeout_ms: u64,
}

impl WorkerArgs {
    /// The consumer name: the flag, else POD_NAME, else the hostname.
    pub(crate) fn consumer(&self) -> String {
        self.consumer_name
            .clone()
            .filter(|name| !name.is_empty())
            .or_else(|| std::env::var(env::POD_NAME).ok().filter(|n| !n.is_empty()))
            .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned())
    }
}

/// The default listen address: every interface, on the contract's `port`.
fn listen_on(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))
}

/// Milliseconds as a [`Duration`], for the `*_ms` options.
pub(crate) fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_defaults() {
        let cli = Cli::try_parse_from(["multivac", "server"]).unwrap();
        let Command::Server(server) = cli.command else {
            panic!("expected server")
        };
        assert_eq!(server.bind.to_string(), "0.0.0.0:8080");
        assert_eq!(server.metrics_bind.to_string(), "0.0.0.0:9090");
        assert!(!server.public_zzz);
        assert!(server.common.redis_ca_file.is_none() && server.common.mongodb_ca_file.is_none());
        assert_eq!(server.required_concepts, 100);
        assert_eq!(server.max_data_bytes, 65536);
        assert_eq!(server.common.redis_url, "redis://127.0.0.1:6379");
        assert_eq!(server.common.mongodb_uri, "mongodb://127.0.0.1:27017");
        assert_eq!(server.common.mongodb_database, "multivac");
        assert_eq!(server.common.log_format, LogFormat::Text);
        assert!(server.api_token.is_none());

        let cli = Cli::try_parse_from(["multivac", "worker", "--consumer-name", "w1"]).unwrap();
        let Command::Worker(worker) = cli.command else {
            panic!("expected worker")
        };
        assert_eq!(worker.metrics_bind.to_string(), "0.0.0.0:9090");
        assert_eq!(worker.consumer(), "w1");
    }

    #[test]
    fn public_zzz_is_a_flag_or_a_boolean() {
        let public = |argv: &[&str]| {
            let cli = Cli::try_parse_from(argv).unwrap();
            let Command::Server(server) = cli.command else {
                panic!("expected server")
            };
            server.public_zzz
        };
        assert!(public(&["multivac", "server", "--public-zzz"]));
        assert!(public(&["multivac", "server", "--public-zzz=true"]));
        assert!(!public(&["multivac", "server", "--public-zzz=false"]));
        assert!(Cli::try_parse_from(["multivac", "server", "--public-zzz=yes please"]).is_err());
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let cli = Cli::try_parse_from([
            "multivac",
            "worker",
            "--redis-ca-file",
            "/nonexistent/ca.crt",
        ])
        .unwrap();
        let err = cli.command.common().redis_ca().unwrap_err().to_string();
        assert!(
            err.contains("/nonexistent/ca.crt") && err.contains(env::REDIS_CA_FILE),
            "{err}"
        );
        let none = Cli::try_parse_from(["multivac", "worker"]).unwrap();
        assert!(none.command.common().redis_ca().unwrap().is_none());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
