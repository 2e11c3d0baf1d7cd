//! The scaler against real components: the backlog reader against a Debian
//! `redis-server` on a free loopback port, and the whole loop (backlog ->
//! worker Deployment replicas, status, Degraded) against the local control
//! plane with the operator binary.

use std::net::TcpListener;
use std::process::Child;
use std::time::{Duration, Instant};

use multivac_contract::{BacklogReading, GROUP, STREAM, acknowledge};
use multivac_operator::BacklogReader;
use multivac_testkit::{RedisConfig, free_port, kill, start_redis};

const PASSWORD: &str = "scaling-test-password";

/// A redis-server child process on 127.0.0.1:`port`, with a password like the
/// managed one; killed on drop.
struct Redis {
    child: Child,
    port: u16,
    dir: Option<std::path::PathBuf>,
}

impl Redis {
    fn start() -> Redis {
        Redis::spawn(free_port(), None)
    }

    /// An in-memory Redis with more `redis-server` arguments.
    fn start_with(extra: &[&str]) -> Redis {
        Redis::spawn_with(free_port(), None, extra)
    }

    /// A Redis that keeps its data across a stop and a start (AOF, fsync on
    /// every write); `previous` restarts a stopped one on the same port.
    fn start_durable(previous: Option<Redis>) -> Redis {
        let (port, dir) = match previous {
            Some(mut old) => {
                old.kill();
                (old.port, old.dir.take())
            }
            None => {
                let port = free_port();
                let dir = std::env::temp_dir().join(format!(
                    "multivac-scaling-redis-{}-{port}",
                    std::process::id()
                ));
                std::fs::create_dir_all(&dir).expect("create the Redis data dir");
                (port, Some(dir))
            }
        };
        Redis::spawn(port, dir)
    }

    fn spawn(port: u16, dir: Option<std::path::PathBuf>) -> Redis {
        Redis::spawn_with(port, dir, &[])
    }

    fn spawn_with(port: u16, dir: Option<std::path::PathBuf>, extra: &[&str]) -> Redis {
        let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        let config = RedisConfig {
            password: Some(PASSWORD),
            persistent: dir.is_some(),
            extra: &extra,
            ..RedisConfig::default()
        };
        let data = dir.clone().unwrap_or_else(std::env::temp_dir);
        let child = start_redis(port, &data, &config);
        Redis { child, port, dir }
    }

    fn url(&self) -> String {
        format!("redis://:{PASSWORD}@127.0.0.1:{}/0", self.port)
    }

    fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("connect to the test redis-server")
    }

    fn stop(mut self) {
        self.kill();
    }

    /// Stops the server but keeps its data dir for `start_durable(Some(..))`.
    fn shutdown(&mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        kill(&mut self.child);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        if let Some(d) = self.dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn xadd(c: &mut redis::Connection, n: usize) {
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("XADD")
            .arg(STREAM)
            .arg("*")
            .arg("data")
            .arg(format!("entry {i}"))
            .ignore();
    }
    pipe.query::<()>(c).expect("XADD");
}

fn create_group(c: &mut redis::Connection) {
    redis::cmd("XGROUP")
        .arg(&["CREATE", STREAM, GROUP, "0", "MKSTREAM"])
        .query::<()>(c)
        .expect("XGROUP CREATE");
}

/// Reads `count` entries as consumer `w1`; returns their ids (now pending).
fn read_group(c: &mut redis::Connection, count: usize) -> Vec<String> {
    let reply: redis::Value = redis::cmd("XREADGROUP")
        .arg(&[
            "GROUP",
            GROUP,
            "w1",
            "COUNT",
            count.to_string().as_str(),
            "STREAMS",
            STREAM,
            ">",
        ])
        .query(c)
        .expect("XREADGROUP");
    let mut ids = Vec::new();
    collect_ids(&reply, &mut ids);
    ids
}

fn collect_ids(v: &redis::Value, ids: &mut Vec<String>) {
    // Reply: [[stream, [[id, [field, value]], ...]]] (or a RESP3 map).
    use redis::Value::*;
    match v {
        Array(items)
            if items.len() == 2
                && matches!(&items[1], Array(f) if f.iter().all(|x| matches!(x, BulkString(_)))) =>
        {
            if let BulkString(id) = &items[0] {
                ids.push(String::from_utf8_lossy(id).into_owned());
            }
        }
        Array(items) => items.iter().for_each(|i| collect_ids(i, ids)),
        Map(pairs) => pairs.iter().for_each(|(_, i)| collect_ids(i, ids)),
        _ => {}
    }
}

fn ack_and_delete(c: &mut redis::Connection, ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    acknowledge(&mut redis::pipe(), ids)
        .query::<()>(c)
        .expect("XACK + XDEL");
}

#[tokio::test]
async fn backlog_follows_the_stream_and_the_group() {
    let redis = Redis::start();
    let mut c = redis.conn();
    let mut reader = BacklogReader::default();
    let url = redis.url();

    // Nothing submitted yet.
    let b = reader.read(&url).await.unwrap();
    assert_eq!((b.backlog().total(), b), (0, BacklogReading::NoStream));

    // Entries but no worker yet: the whole stream waits.
    xadd(&mut c, 25);
    let b = reader.read(&url).await.unwrap();
    assert_eq!(
        (b.backlog().total(), b),
        (25, BacklogReading::NoGroup { len: 25 })
    );

    // The group exists: lag (undelivered) + pending (delivered, not acked).
    create_group(&mut c);
    let ids = read_group(&mut c, 10);
    assert_eq!(ids.len(), 10);
    let b = reader.read(&url).await.unwrap();
    assert_eq!(
        (b.backlog().total(), b),
        (
            25,
            BacklogReading::Lag {
                lag: 15,
                pending: 10
            }
        )
    );

    // Acked entries leave the backlog; deleting them (as the app does) keeps
    // the lag computable.
    ack_and_delete(&mut c, &ids[..4]);
    let b = reader.read(&url).await.unwrap();
    assert_eq!(
        (b.backlog().total(), b),
        (
            21,
            BacklogReading::Lag {
                lag: 15,
                pending: 6
            }
        )
    );

    // Deleting an undelivered entry makes Redis report a nil lag: the reader
    // falls back on XLEN and still counts what waits.
    let last: Vec<String> = {
        let reply: redis::Value = redis::cmd("XREVRANGE")
            .arg(&[STREAM, "+", "-", "COUNT", "1"])
            .query(&mut c)
            .unwrap();
        let mut ids = Vec::new();
        collect_ids(&reply, &mut ids);
        ids
    };
    redis::cmd("XDEL")
        .arg(STREAM)
        .arg(&last)
        .query::<()>(&mut c)
        .unwrap();
    let b = reader.read(&url).await.unwrap();
    assert_eq!(
        (b.backlog().total(), b),
        (
            20,
            BacklogReading::LenFallback {
                len: 20,
                pending: 6
            }
        )
    );

    // Everything processed.
    loop {
        let ids = read_group(&mut c, 100);
        if ids.is_empty() {
            break;
        }
        ack_and_delete(&mut c, &ids);
    }
    let pending: Vec<String> = {
        let reply: redis::Value = redis::cmd("XPENDING")
            .arg(&[STREAM, GROUP, "-", "+", "100"])
            .query(&mut c)
            .unwrap();
        let mut out = Vec::new();
        if let redis::Value::Array(items) = reply {
            for i in items {
                if let redis::Value::Array(f) = i
                    && let Some(redis::Value::BulkString(id)) = f.first()
                {
                    out.push(String::from_utf8_lossy(id).into_owned());
                }
            }
        }
        out
    };
    ack_and_delete(&mut c, &pending);
    let b = reader.read(&url).await.unwrap();
    assert_eq!(b.backlog().total(), 0, "{b:?}");
}

#[tokio::test]
async fn backlog_errors_are_quick_and_say_why() {
    let redis = Redis::start();
    let mut reader = BacklogReader::default();

    // Wrong password: an error that does not leak the URL.
    let wrong = format!("redis://:not-the-password@127.0.0.1:{}/0", redis.port);
    let err = reader.read(&wrong).await.unwrap_err().to_string();
    assert!(
        !err.contains("not-the-password"),
        "the error leaks the password: {err}"
    );

    // The right URL then works: the cached connection follows the URL.
    assert_eq!(
        reader.read(&redis.url()).await.unwrap(),
        BacklogReading::NoStream
    );

    // Garbage URL.
    let err = reader.read("not a url").await.unwrap_err().to_string();
    assert!(err.contains("redis-url"), "{err}");

    // Redis gone: the cached connection fails fast, and so does reconnecting.
    let url = redis.url();
    redis.stop();
    for _ in 0..2 {
        let started = Instant::now();
        let err = reader.read(&url).await.unwrap_err().to_string();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}: {err}",
            started.elapsed()
        );
        assert!(
            !err.contains(PASSWORD),
            "the error leaks the password: {err}"
        );
    }

    // A black hole (nothing answers SYN within the connect timeout) is cut
    // short too: 10.255.255.1 is unroutable in test environments.
    let started = Instant::now();
    let _ = reader
        .read("redis://10.255.255.1:6379/0")
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "connect took {:?}",
        started.elapsed()
    );
}

// ---- the whole loop on the local control plane ------------------------------

mod cluster {
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Namespace, Secret};
    use k8s_openapi::api::events::v1::Event;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
    use kube::Client;
    use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
    use multivac_operator::MultiVac;
    use serde_json::json;

    pub fn client_config() {
        match std::env::var("KUBECONFIG") {
            Ok(p) if std::path::Path::new(&p).exists() => {}
            _ => panic!(
                "no local control plane: start it with `bash hack/cluster.sh up` then \
                 `eval $(bash hack/cluster.sh env)`, or run `make test`"
            ),
        }
    }

    pub async fn client() -> Client {
        client_config();
        Client::try_default()
            .await
            .expect("build a client from KUBECONFIG")
    }

    /// Installs the CRD the operator serves (idempotent) and waits until the
    /// API server serves it.
    pub async fn install_crd(client: &Client) {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let crd = multivac_operator::custom_resource_definition();
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(
            &name,
            &PatchParams::apply("multivac-scaling-test").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("apply the MultiVac CRD");
        wait(
            Duration::from_secs(30),
            "the CRD to be Established",
            || async {
                let c = crds.get(&name).await.ok()?;
                c.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            },
        )
        .await;
    }

    /// Polls `f` every 100 ms until it returns Some, or panics after `limit`.
    pub async fn wait<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = f().await {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A namespace of its own.
    pub struct TestNamespace {
        pub name: String,
        client: Client,
    }

    impl TestNamespace {
        pub async fn create(client: &Client, prefix: &str) -> Self {
            let name = format!("{prefix}-{}", std::process::id());
            let api: Api<Namespace> = Api::all(client.clone());
            let ns = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
            api.create(&PostParams::default(), &ns)
                .await
                .expect("create the test namespace");
            Self {
                name,
                client: client.clone(),
            }
        }
    }

    impl TestNamespace {
        /// Deletes the namespace (and everything in it) once the test passed;
        /// a failed test leaves it for inspection.
        pub async fn delete(self) {
            let _ = Api::<Namespace>::all(self.client.clone())
                .delete(&self.name, &DeleteParams::default())
                .await;
        }
    }

    /// The operator binary, killed on drop; its log is printed on failure.
    pub struct Operator {
        child: Child,
        pub log: std::path::PathBuf,
    }

    impl Operator {
        pub fn spawn() -> Self {
            let log = std::env::temp_dir().join(format!(
                "multivac-scaling-operator-{}.log",
                std::process::id()
            ));
            let out = std::fs::File::create(&log).expect("create the operator log");
            let metrics_port = super::free_port();
            let child = Command::new(env!("CARGO_BIN_EXE_multivac-operator"))
                .arg("--leader-election=false")
                .arg(format!("--metrics-bind=127.0.0.1:{metrics_port}"))
                .env("RUST_LOG", "info,multivac_operator=debug")
                .stdout(Stdio::from(out.try_clone().unwrap()))
                .stderr(Stdio::from(out))
                .spawn()
                .expect("spawn the multivac-operator binary");
            Self { child, log }
        }

        /// Sends SIGTERM and waits (up to 30 s) for the process to exit:
        /// how long it took.
        pub fn terminate(&mut self) -> Duration {
            let started = Instant::now();
            let sent = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .status()
                .expect("run kill");
            assert!(sent.success(), "kill -TERM failed");
            while started.elapsed() < Duration::from_secs(30) {
                if self
                    .child
                    .try_wait()
                    .expect("wait for the operator")
                    .is_some()
                {
                    return started.elapsed();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            started.elapsed()
        }

        pub fn tail(&self) -> String {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        }
    }

    impl Drop for Operator {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            if std::thread::panicking() {
                eprintln!(
                    "---- operator log ({}) ----\n{}",
                    self.log.display(),
                    self.tail()
                );
            }
        }
    }

    pub async fn secret(client: &Client, ns: &str, name: &str, key: &str, value: &str) {
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        let s: Secret = serde_json::from_value(json!({
            "metadata": {"name": name}, "stringData": {key: value}
        }))
        .unwrap();
        api.create(&PostParams::default(), &s)
            .await
            .expect("create a Secret");
    }

    pub async fn replicas(client: &Client, ns: &str, name: &str) -> Option<i32> {
        let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
        api.get_opt(name).await.ok()??.spec.replicas
    }

    pub async fn degraded(client: &Client, ns: &str, name: &str) -> Option<Condition> {
        let api: Api<MultiVac> = Api::namespaced(client.clone(), ns);
        let mv = api.get_opt(name).await.ok()??;
        mv.status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Degraded")
    }

    pub async fn events(client: &Client, ns: &str, reason: &str) -> Vec<String> {
        let api: Api<Event> = Api::namespaced(client.clone(), ns);
        api.list(&ListParams::default())
            .await
            .map(|l| {
                l.items
                    .into_iter()
                    .filter(|e| e.reason.as_deref() == Some(reason))
                    .filter_map(|e| e.note)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Waits for MultiVac `name`'s Degraded condition to have `status`.
async fn degraded_becomes(
    client: &kube::Client,
    ns: &str,
    name: &str,
    status: &str,
    timeout: Duration,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    cluster::wait(timeout, &format!("Degraded={status} on {name}"), || async {
        let c = cluster::degraded(client, ns, name).await?;
        (c.status == status).then_some(c)
    })
    .await
}

/// Creates a MultiVac on the external Redis of Secret `redis_secret` (and a
/// MongoDB Secret `mongo`), with `workers` as its `spec.workers`.
async fn create_external(
    mvs: &kube::Api<multivac_operator::MultiVac>,
    name: &str,
    redis_secret: &str,
    workers: &serde_json::Value,
) {
    let redis = serde_json::json!({"secretRef": {"name": redis_secret}});
    create_on(mvs, name, redis, workers).await;
}

/// Creates a MultiVac whose `spec.redis.external` is `redis` (and a MongoDB
/// Secret `mongo`), with `workers` as its `spec.workers`.
async fn create_on(
    mvs: &kube::Api<multivac_operator::MultiVac>,
    name: &str,
    redis: serde_json::Value,
    workers: &serde_json::Value,
) {
    let mv: multivac_operator::MultiVac = serde_json::from_value(serde_json::json!({
        "apiVersion": "multivac.io/v1alpha1", "kind": "MultiVac",
        "metadata": {"name": name},
        "spec": {
            "image": "multivac:test",
            "networkPolicy": {"enabled": false},
            "workers": workers,
            "redis": {"external": redis},
            "mongodb": {"external": {"secretRef": {"name": "mongo"}}}
        }
    }))
    .unwrap();
    mvs.create(&kube::api::PostParams::default(), &mv)
        .await
        .expect("create the MultiVac");
}

#[tokio::test]
async fn workers_follow_the_backlog_on_the_control_plane() {
    use cluster::*;
    use kube::api::Api;
    use multivac_operator::MultiVac;

    const POLL: u64 = 2;
    const WINDOW: u64 = 10;
    let poll = Duration::from_secs(POLL);
    let window = Duration::from_secs(WINDOW);

    let client = client().await;
    let mut redis = Redis::start_durable(None);
    install_crd(&client).await;
    let ns = TestNamespace::create(&client, "scaling").await;
    let ns_name = ns.name.clone();
    secret(&client, &ns_name, "redis", "redis-url", &redis.url()).await;
    secret(
        &client,
        &ns_name,
        "mongo",
        "mongodb-uri",
        "mongodb://u:p@127.0.0.1:9/",
    )
    .await;
    // A "Redis" that accepts connections and never answers: its MultiVac's
    // polls hang until the timeouts, and must not delay the other one.
    let black_hole = TcpListener::bind("127.0.0.1:0").expect("bind a black-hole port");
    let black_hole_url = format!("redis://:{PASSWORD}@{}/0", black_hole.local_addr().unwrap());
    secret(
        &client,
        &ns_name,
        "redis-stuck",
        "redis-url",
        &black_hole_url,
    )
    .await;
    let mvs: Api<MultiVac> = Api::namespaced(client.clone(), &ns_name);
    let workers = serde_json::json!({"minReplicas": 1, "maxReplicas": 10, "targetBacklogPerWorker": 100,
                                     "pollIntervalSeconds": POLL, "scaleDownStabilizationSeconds": WINDOW});
    for (name, redis_secret) in [("stuck", "redis-stuck"), ("mv", "redis")] {
        create_external(&mvs, name, redis_secret, &workers).await;
    }
    let operator = Operator::spawn();

    // The reconciler creates the worker Deployment; the scaler reads an empty
    // Redis and reports Degraded=False.
    wait(
        Duration::from_secs(60),
        "the worker Deployment at minReplicas",
        || async { (replicas(&client, &ns_name, "mv-worker").await? == 1).then_some(()) },
    )
    .await;
    wait(Duration::from_secs(30), "Degraded=False", || async {
        let c = degraded(&client, &ns_name, "mv").await?;
        (c.status == "False" && c.reason == "BacklogRead").then_some(())
    })
    .await;

    // The stuck one is reported, with its replicas kept.
    let stuck = degraded_becomes(&client, &ns_name, "stuck", "True", Duration::from_secs(30)).await;
    assert_eq!(stuck.reason, "RedisUnreachable", "{stuck:?}");
    assert_eq!(replicas(&client, &ns_name, "stuck-worker").await, Some(1));

    // 1,000 entries, 100 per worker -> 10 workers within two poll intervals,
    // while the stuck MultiVac's polls keep hanging.
    let mut c = redis.conn();
    xadd(&mut c, 1000);
    let burst = Instant::now();
    wait(
        2 * poll + Duration::from_secs(1),
        "10 workers after the burst",
        || async { (replicas(&client, &ns_name, "mv-worker").await? == 10).then_some(()) },
    )
    .await;
    eprintln!("burst -> 10 replicas in {:?}", burst.elapsed());
    let up = wait(Duration::from_secs(10), "a ScaledUp event", || async {
        let e = events(&client, &ns_name, "ScaledUp").await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert!(up.iter().any(|n| n.contains("backlog 1000")), "{up:?}");
    let status = wait(
        Duration::from_secs(10),
        "the status to show the backlog",
        || async {
            let w = mvs.get("mv").await.ok()?.status?.workers?;
            (w.backlog == Some(1000) && w.desired == Some(10)).then_some(w)
        },
    )
    .await;
    assert!(status.last_scale_time.is_some(), "{status:?}");

    // Redis goes away: the replicas stay, Degraded=True says why.
    let port = redis.port;
    redis.shutdown();
    let cond = wait(
        4 * poll + Duration::from_secs(10),
        "Degraded=True",
        || async {
            let c = degraded(&client, &ns_name, "mv").await?;
            (c.status == "True").then_some(c)
        },
    )
    .await;
    assert_eq!(cond.reason, "RedisUnreachable", "{cond:?}");
    assert!(cond.message.contains("keeping 10 workers"), "{cond:?}");
    let until = Instant::now() + 2 * poll;
    while Instant::now() < until {
        assert_eq!(
            replicas(&client, &ns_name, "mv-worker").await,
            Some(10),
            "replicas changed while Redis was down"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Back on the same port with its data: the condition clears, the
    // replicas do not move (the backlog is still 1,000).
    let redis = Redis::start_durable(Some(redis));
    assert_eq!(redis.port, port);
    wait(
        3 * poll + Duration::from_secs(5),
        "Degraded=False again",
        || async {
            let c = degraded(&client, &ns_name, "mv").await?;
            (c.status == "False").then_some(())
        },
    )
    .await;
    assert_eq!(replicas(&client, &ns_name, "mv-worker").await, Some(10));

    // Drain the stream like the workers do: the replicas stay for the whole
    // stabilization window, then come down to minReplicas.
    let mut c = redis.conn();
    create_group(&mut c);
    loop {
        let ids = read_group(&mut c, 500);
        if ids.is_empty() {
            break;
        }
        ack_and_delete(&mut c, &ids);
    }
    let drained = Instant::now();
    // The last poll that saw 1,000 entries was at most one interval ago.
    let hold_until = drained + window - poll;
    while Instant::now() < hold_until {
        assert_eq!(
            replicas(&client, &ns_name, "mv-worker").await,
            Some(10),
            "scaled down {:?} after the drain, inside the {WINDOW}s window",
            drained.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait(
        window + 2 * poll,
        "the scale-down to minReplicas",
        || async { (replicas(&client, &ns_name, "mv-worker").await? == 1).then_some(()) },
    )
    .await;
    eprintln!(
        "drain -> 1 replica in {:?} (window {WINDOW}s)",
        drained.elapsed()
    );
    let down = wait(Duration::from_secs(10), "a ScaledDown event", || async {
        let e = events(&client, &ns_name, "ScaledDown").await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert!(down.iter().any(|n| n.contains("backlog 0")), "{down:?}");

    // minReplicas 0: to zero once the stream stayed empty for a whole window,
    // and back to one worker on a single entry within two poll intervals.
    let zero = serde_json::json!({"spec": {"workers": {"minReplicas": 0}}});
    mvs.patch(
        "mv",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&zero),
    )
    .await
    .expect("set minReplicas to 0");
    let lowered = Instant::now();
    wait(window + 3 * poll, "the scale to zero", || async {
        (replicas(&client, &ns_name, "mv-worker").await? == 0).then_some(())
    })
    .await;
    assert!(
        lowered.elapsed() >= window - poll,
        "scaled to zero {:?} after minReplicas 0, inside the {WINDOW}s window",
        lowered.elapsed()
    );
    xadd(&mut c, 1);
    let one = Instant::now();
    wait(
        2 * poll + Duration::from_secs(1),
        "one worker for one entry",
        || async { (replicas(&client, &ns_name, "mv-worker").await? == 1).then_some(()) },
    )
    .await;
    eprintln!("1 entry -> woke from zero in {:?}", one.elapsed());
    drop(operator);
    drop(black_hole);
    ns.delete().await;
}

/// Each new connection reads Redis' eviction policy: an `allkeys-*` one may
/// delete the stream; a refused CONFIG is unknown, not an error.
#[tokio::test]
async fn the_reader_reads_the_eviction_policy_on_connect() {
    use multivac_contract::EvictionPolicy;
    // (redis-server arguments, the policy the reader reports)
    let table: [(&[&str], EvictionPolicy); 3] = [
        (&[], EvictionPolicy::NoEviction),
        (
            &["--maxmemory-policy", "allkeys-lru"],
            EvictionPolicy::AllKeys("allkeys-lru".into()),
        ),
        (
            &["--maxmemory-policy", "volatile-ttl"],
            EvictionPolicy::Volatile("volatile-ttl".into()),
        ),
    ];
    for (args, policy) in table {
        let redis = Redis::start_with(args);
        let mut reader = BacklogReader::default();
        reader.read(&redis.url()).await.unwrap();
        assert_eq!(reader.eviction_policy(), Some(&policy), "{args:?}");
    }
    let renamed = Redis::start_with(&["--rename-command", "CONFIG", ""]);
    let mut reader = BacklogReader::default();
    assert_eq!(
        reader.read(&renamed.url()).await.unwrap(),
        BacklogReading::NoStream,
        "a refused CONFIG must not fail the backlog read"
    );
    assert!(
        matches!(reader.eviction_policy(), Some(EvictionPolicy::Unknown(_))),
        "{:?}",
        reader.eviction_policy()
    );
}

/// A MultiVac whose external Redis may evict the stream is `Degraded`
/// (reason RedisMayEvictData) while its backlog is still read and scaled;
/// one whose Redis refuses CONFIG is not.
#[tokio::test]
async fn a_redis_that_may_evict_the_stream_makes_the_multivac_degraded() {
    use cluster::*;
    use kube::api::Api;
    use multivac_operator::MultiVac;

    let client = client().await;
    install_crd(&client).await;
    let evicting = Redis::start_with(&["--maxmemory-policy", "allkeys-lru"]);
    let closed = Redis::start_with(&["--rename-command", "CONFIG", ""]);
    let ns = TestNamespace::create(&client, "eviction").await;
    let ns_name = ns.name.clone();
    secret(&client, &ns_name, "evicting", "redis-url", &evicting.url()).await;
    secret(&client, &ns_name, "closed", "redis-url", &closed.url()).await;
    secret(
        &client,
        &ns_name,
        "mongo",
        "mongodb-uri",
        "mongodb://u:p@127.0.0.1:9/",
    )
    .await;
    let mvs: Api<MultiVac> = Api::namespaced(client.clone(), &ns_name);
    let workers = serde_json::json!({"pollIntervalSeconds": 1});
    for (name, redis_secret) in [("evicting", "evicting"), ("closed", "closed")] {
        create_external(&mvs, name, redis_secret, &workers).await;
    }
    let operator = Operator::spawn();
    let cond = degraded_becomes(
        &client,
        &ns_name,
        "evicting",
        "True",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(cond.reason, "RedisMayEvictData", "{cond:?}");
    assert!(cond.message.contains("allkeys-lru"), "{cond:?}");
    assert!(cond.message.contains("noeviction"), "{cond:?}");
    // The backlog is still read (the status shows it).
    let backlog = mvs
        .get("evicting")
        .await
        .unwrap()
        .status
        .and_then(|s| s.workers)
        .and_then(|w| w.backlog);
    assert_eq!(backlog, Some(0));
    let cond = degraded_becomes(
        &client,
        &ns_name,
        "closed",
        "False",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(cond.reason, "BacklogRead", "{cond:?}");
    drop(operator);
    ns.delete().await;
}

// ---- a Redis over TLS, with a CA the test makes ---------------------------------

/// A redis-server with only a TLS port, on a certificate for 127.0.0.1
/// signed by a CA made here (rcgen); killed on drop.
struct TlsRedis {
    child: Child,
    port: u16,
    ca_pem: String,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    fn start() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &Issuer::new(ca, ca_key))
            .unwrap();
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("server.crt"), cert.pem()).unwrap();
        std::fs::write(path("server.key"), key.serialize_pem()).unwrap();
        std::fs::write(path("ca.crt"), &ca_pem).unwrap();
        let port = free_port();
        let (cert, key, ca) = (path("server.crt"), path("server.key"), path("ca.crt"));
        let config = RedisConfig::tls(&cert, &key, &ca, PASSWORD);
        let child = start_redis(port, dir.path(), &config);
        TlsRedis {
            child,
            port,
            ca_pem,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("rediss://:{PASSWORD}@127.0.0.1:{}/0", self.port)
    }

    /// A plain connection for XADD, over TLS with the CA.
    fn conn(&self) -> redis::Connection {
        let certificates = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(self.ca_pem.clone().into_bytes()),
        };
        redis::Client::build_with_tls(self.url(), certificates)
            .and_then(|c| c.get_connection())
            .expect("connect to the TLS redis-server")
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// The backlog of a `rediss://` Redis is read with the CA that signed its
/// certificate; without it (public roots), with another CA, or through
/// `redis://`, nothing is read, and no error shows the password.
#[tokio::test]
async fn the_backlog_is_read_over_tls_only_with_the_right_ca() {
    let redis = TlsRedis::start();
    let other = TlsRedis::start();
    xadd(&mut redis.conn(), 7);
    let mut reader = BacklogReader::default();
    let ca = redis.ca_pem.as_bytes();
    let reading = reader.read_with_ca(&redis.url(), Some(ca)).await.unwrap();
    assert_eq!(reading.backlog().total(), 7, "{reading:?}");
    let plain = redis.url().replacen("rediss://", "redis://", 1);
    for (what, url, ca) in [
        ("the public roots", redis.url(), None),
        ("another CA", redis.url(), Some(other.ca_pem.as_bytes())),
        ("a plain connection to the TLS port", plain.clone(), None),
    ] {
        let started = Instant::now();
        let err = reader.read_with_ca(&url, ca).await.unwrap_err().to_string();
        assert!(!err.contains(PASSWORD), "{what}: {err}");
        assert!(started.elapsed() < Duration::from_secs(5), "{what}: {err}");
    }
    let err = reader
        .read_with_ca(&plain, Some(ca))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not rediss://"), "{err}");
    // And the right one again: the reader reconnects for the new CA.
    let reading = reader.read_with_ca(&redis.url(), Some(ca)).await.unwrap();
    assert_eq!(reading.backlog().total(), 7);
}

/// On the control plane: the scaler reads the Redis URL from the Secret the
/// app uses and the CA from the Secret `caSecretRef` names (GET only), and
/// scales from the TLS Redis's backlog; the pods get the CA mounted. A
/// MultiVac on the same Redis without the CA is Degraded (fails closed).
#[tokio::test]
async fn the_scaler_reads_a_tls_redis_with_the_ca_from_a_secret() {
    use cluster::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::Api;
    use multivac_operator::MultiVac;

    let client = client().await;
    let redis = TlsRedis::start();
    install_crd(&client).await;
    let ns = TestNamespace::create(&client, "scaling-tls").await;
    let ns_name = ns.name.clone();
    secret(&client, &ns_name, "redis", "redis-url", &redis.url()).await;
    secret(&client, &ns_name, "redis-ca", "ca.crt", &redis.ca_pem).await;
    secret(
        &client,
        &ns_name,
        "mongo",
        "mongodb-uri",
        "mongodb://u:p@127.0.0.1:9/",
    )
    .await;
    xadd(&mut redis.conn(), 450);
    let mvs: Api<MultiVac> = Api::namespaced(client.clone(), &ns_name);
    let workers = serde_json::json!({"minReplicas": 1, "maxReplicas": 10,
        "targetBacklogPerWorker": 100, "pollIntervalSeconds": 1});
    for (name, ca) in [("tls", Some("redis-ca")), ("noca", None)] {
        let mut external = serde_json::json!({"secretRef": {"name": "redis"}});
        if let Some(ca) = ca {
            external["caSecretRef"] = serde_json::json!({"name": ca});
        }
        create_on(&mvs, name, external, &workers).await;
    }
    let operator = Operator::spawn();
    let status = wait(
        Duration::from_secs(60),
        "the backlog of the TLS Redis in status",
        || async {
            let w = mvs.get("tls").await.ok()?.status?.workers?;
            (w.backlog == Some(450)).then_some(w)
        },
    )
    .await;
    assert_eq!(status.desired, Some(5), "{status:?}");
    wait(Duration::from_secs(30), "5 workers", || async {
        (replicas(&client, &ns_name, "tls-worker").await? == 5).then_some(())
    })
    .await;
    let degraded_tls = degraded(&client, &ns_name, "tls").await.unwrap();
    assert_eq!(degraded_tls.status, "False", "{degraded_tls:?}");
    let worker: Deployment = Api::namespaced(client.clone(), &ns_name)
        .get("tls-worker")
        .await
        .unwrap();
    let pod = serde_json::to_value(&worker).unwrap()["spec"]["template"]["spec"].clone();
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["secret"]["secretName"] == "redis-ca"),
        "{pod}"
    );
    let noca = wait(
        Duration::from_secs(30),
        "Degraded=True without the CA",
        || async {
            let c = degraded(&client, &ns_name, "noca").await?;
            (c.status == "True").then_some(c)
        },
    )
    .await;
    assert_eq!(noca.reason, "RedisUnreachable", "{noca:?}");
    assert!(!noca.message.contains(PASSWORD), "{noca:?}");
    drop(operator);
    ns.delete().await;
}

/// Host names that never resolve (the `.invalid` top-level domain) used to
/// park blocking `getaddrinfo` threads that made shutdown wait; lookups are
/// futures now, dropped on SIGTERM.
#[tokio::test]
async fn sigterm_stops_the_operator_while_redis_hosts_do_not_resolve() {
    use cluster::*;
    use kube::api::{Api, PostParams};
    use multivac_operator::MultiVac;

    const HOST: &str = "redis.multivac-test.invalid";
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::create(&client, "shutdown").await;
    let url = format!("redis://:{PASSWORD}@{HOST}:6379/0");
    secret(&client, &ns.name, "redis", "redis-url", &url).await;
    secret(
        &client,
        &ns.name,
        "mongo",
        "mongodb-uri",
        "mongodb://u:p@127.0.0.1:9/",
    )
    .await;
    let mvs: Api<MultiVac> = Api::namespaced(client.clone(), &ns.name);
    let names: Vec<String> = (0..10).map(|i| format!("mv{i}")).collect();
    for name in &names {
        let mv: MultiVac = serde_json::from_value(serde_json::json!({
            "apiVersion": "multivac.io/v1alpha1", "kind": "MultiVac",
            "metadata": {"name": name, "namespace": ns.name},
            "spec": {
                "image": "multivac:test",
                "networkPolicy": {"enabled": false},
                "workers": {"pollIntervalSeconds": 1},
                "redis": {"external": {"secretRef": {"name": "redis"}}},
                "mongodb": {"external": {"secretRef": {"name": "mongo"}}}
            }
        }))
        .unwrap();
        mvs.create(&PostParams::default(), &mv)
            .await
            .expect("create a MultiVac");
    }
    let mut operator = Operator::spawn();
    for name in &names {
        let cond = wait(
            Duration::from_secs(90),
            "Degraded=True on every MultiVac",
            || async {
                let c = degraded(&client, &ns.name, name).await?;
                (c.status == "True").then_some(c)
            },
        )
        .await;
        assert_eq!(cond.reason, "RedisUnreachable", "{cond:?}");
        assert!(cond.message.contains(HOST), "{cond:?}");
    }
    let took = operator.terminate();
    assert!(
        took < Duration::from_secs(10),
        "SIGTERM -> exit took {took:?}:\n{}",
        operator.tail()
    );
    ns.delete().await;
}
