//! What the tests against the real control plane and real stores share: the
//! cluster client, a namespace per test, the operator run in this process,
//! and the real servers (Debian's redis-server, FerretDB with authentication,
//! the `multivac` binary), each on a free loopback port and stopped when
//! dropped. Nothing is mocked.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use multivac_operator::Context;
pub use multivac_testkit::free_port;
use multivac_testkit::{
    RedisConfig, kill, multivac_environment, spawn_listening, start_redis, wait_listening,
};
use prometheus_client::registry::Registry;
use serde_json::json;
use tempfile::TempDir;

const HOW: &str = "start the control plane: `bash hack/cluster.sh up` then `eval $(bash hack/cluster.sh env)`, or run `make test`";
/// Generous: the machine running the suite may be busy (parallel tests, builds).
pub const WAIT: Duration = Duration::from_secs(180);

pub async fn client() -> Client {
    if std::env::var_os("KUBECONFIG").is_none() {
        panic!("KUBECONFIG is not set: {HOW}");
    }
    let client = Client::try_default()
        .await
        .unwrap_or_else(|e| panic!("no client ({e}): {HOW}"));
    client
        .apiserver_version()
        .await
        .unwrap_or_else(|e| panic!("API server unreachable ({e}): {HOW}"));
    client
}

/// Installs the CRD (idempotent server-side apply) and waits until it is served.
pub async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "multivacs.multivac.io",
        &PatchParams::apply("multivac-tests").force(),
        &Patch::Apply(multivac_operator::custom_resource_definition()),
    )
    .await
    .expect("install the CRD");
    wait_for("CRD established", || async {
        let crd = crds.get("multivacs.multivac.io").await.ok()?;
        crd.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
            .then_some(())
    })
    .await;
}

/// A fresh namespace, deleted when dropped.
pub struct TestNamespace {
    client: Client,
    pub name: String,
}

impl TestNamespace {
    pub async fn new(client: &Client, prefix: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("{prefix}-{}-{nanos}", std::process::id());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        Self {
            client: client.clone(),
            name,
        }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let (client, name) = (self.client.clone(), self.name.clone());
        // Best effort, without blocking the test's runtime.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    let _ = Api::<Namespace>::all(client)
                        .delete(&name, &DeleteParams::default())
                        .await;
                });
            }
        })
        .join()
        .ok();
    }
}

/// Polls `f` every 250 ms until it returns Some, or panics after [`WAIT`].
pub async fn wait_for<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    wait_up_to(WAIT, what, f).await
}

/// [`wait_for`] with its own deadline.
pub async fn wait_up_to<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The operator, in this process, watching `namespace` only; stopped when dropped.
pub struct Operator {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Operator {
    /// Starts it with `ctx` adjusted by `adjust` (e.g. where the stores are).
    pub async fn start(
        client: &Client,
        namespace: &str,
        adjust: impl FnOnce(Context) -> Context,
    ) -> Self {
        let registry = Arc::new(Mutex::new(Registry::default()));
        let ctx = Arc::new(adjust(Context::new(
            client.clone(),
            registry,
            "multivac-system".into(),
        )));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(multivac_operator::run(
            ctx,
            Some(namespace.into()),
            16, // --concurrency's default
            async move {
                let _ = stopped.await;
            },
        ));
        Self { stop: Some(stop) }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A key of a Secret, decoded.
pub async fn secret_value(client: &Client, ns: &str, name: &str, key: &str) -> Option<String> {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()??;
    let bytes = secret.data?.get(key)?.0.clone();
    String::from_utf8(bytes).ok()
}

/// A redis-server of our own, with a password (`requirepass`).
pub struct Redis {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

impl Redis {
    pub fn start(port: u16, password: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = RedisConfig {
            password: Some(password),
            password_on_stdin: true,
            ..RedisConfig::default()
        };
        let child = start_redis(port, dir.path(), &config);
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    /// Whether Redis accepts `password` (AUTH and PING).
    pub async fn accepts(&self, password: &str) -> bool {
        let url = format!("redis://:{password}@127.0.0.1:{}/0", self.port);
        let Ok(client) = redis::Client::open(url) else {
            return false;
        };
        match client.get_multiplexed_async_connection().await {
            Ok(mut conn) => redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .is_ok(),
            Err(_) => false,
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// FerretDB (SQLite) with authentication on and a root user in `admin`.
pub struct FerretDb {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

impl FerretDb {
    pub fn start(port: u16, root: &str, password: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child =
            multivac_testkit::ferretdb_command(&multivac_testkit::ferretdb(), dir.path())
                .arg(format!("--listen-addr=127.0.0.1:{port}"))
                // Users and SCRAM authentication (FerretDB 1.x: "new auth").
                .args(["--test-enable-new-auth", "--setup-database=admin"])
                .arg(format!("--setup-username={root}"))
                .arg(format!("--setup-password={password}"))
                .spawn()
                .expect("starting FerretDB");
        wait_listening(port, "FerretDB", &mut child, Duration::from_secs(30));
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    /// A client authenticated as `user` (SCRAM, source `admin`).
    pub async fn client(&self, user: &str, password: &str) -> mongodb::Client {
        let uri = format!(
            "mongodb://{user}:{password}@127.0.0.1:{}/?authSource=admin&directConnection=true&serverSelectionTimeoutMS=3000",
            self.port
        );
        mongodb::Client::with_uri_str(uri)
            .await
            .expect("mongodb uri")
    }

    /// Whether `user` can authenticate with `password`.
    pub async fn accepts(&self, user: &str, password: &str) -> bool {
        self.client(user, password)
            .await
            .database("admin")
            .run_command(mongodb::bson::doc! {"connectionStatus": 1})
            .await
            .is_ok()
    }
}

impl Drop for FerretDb {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// MultiVac `name`'s managed MongoDB, for an operator outside the cluster
/// (kwok runs no containers): FerretDB on a free loopback port, started as
/// the image starts it, with the root user of the credentials Secret once
/// the operator has made it (and started afresh, as on new volumes, when a
/// new Secret names another root password). The operator reaches it through
/// [`Self::service`] mapped to [`Self::address`]. Stopped when dropped.
pub struct ManagedMongoDb {
    pub service: String,
    pub address: String,
    server: tokio::task::JoinHandle<()>,
}

impl ManagedMongoDb {
    pub fn new(client: &Client, ns: &str, name: &str) -> Self {
        let port = free_port();
        let (client, ns2, secret) = (
            client.clone(),
            ns.to_string(),
            format!("{name}-credentials"),
        );
        let server = tokio::spawn(async move {
            let mut running: Option<(String, FerretDb)> = None;
            loop {
                let root = secret_value(&client, &ns2, &secret, "mongodb-username").await;
                let password = secret_value(&client, &ns2, &secret, "mongodb-password").await;
                if let (Some(root), Some(password)) = (root, password) {
                    let wanted = format!("{root}:{password}");
                    if running.as_ref().is_none_or(|(now, _)| *now != wanted) {
                        drop(running.take());
                        let server = tokio::task::spawn_blocking(move || {
                            FerretDb::start(port, &root, &password)
                        })
                        .await
                        .expect("starting FerretDB");
                        running = Some((wanted, server));
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Self {
            service: format!("{name}-mongodb.{ns}.svc:27017"),
            address: format!("127.0.0.1:{port}"),
            server,
        }
    }

    /// The operator's `--store-address` value for it.
    pub fn store_address(&self) -> String {
        format!("{}={}", self.service, self.address)
    }
}

impl Drop for ManagedMongoDb {
    fn drop(&mut self) {
        // Dropping the task's future drops (stops) its FerretDB.
        self.server.abort();
    }
}

/// The `multivac` binary cargo built beside this test.
fn multivac_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("multivac"))
        .expect("the target directory");
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p multivac` (`make test` does)",
        bin.display()
    );
    bin
}

/// A running `multivac server` or `multivac worker`.
pub struct App {
    child: Child,
    pub port: u16,
}

impl App {
    /// `multivac <subcommand>` with these connection strings.
    pub fn start(
        subcommand: &str,
        redis_url: &str,
        mongodb_uri: &str,
        database: &str,
        name: &str,
    ) -> Self {
        let port = free_port();
        let mut cmd = Command::new(multivac_binary());
        cmd.arg(subcommand);
        multivac_environment(&mut cmd, redis_url, mongodb_uri, database, port)
            .env("RUST_LOG", "warn")
            .env("MULTIVAC_CONSUMER_NAME", name);
        let what = format!("multivac {subcommand}");
        let child = spawn_listening(&mut cmd, port, &what, Duration::from_secs(30));
        Self { child, port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// SIGTERM (a pod stopped by a rollout), then waits for the exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "multivac did not stop within 90 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
