//! `make faults`: the bad days, on real `redis-server`, FerretDB and
//! `multivac` processes (the same harness as the integration tests, see
//! `common`). Each fault runs under a steady POST load and prints one line:
//! requests accepted (202), refused (503 with Retry-After), failed (anything
//! else, or no answer), data lost (a 202 whose datum is neither learned nor
//! dead-lettered), data duplicated (a datum stored twice) and the time from
//! the end of the fault to full recovery. Each line is also an assertion;
//! the last line is `faults: N passed, M failed`, and the exit status is
//! non-zero on any failure.
//!
//! A custom harness (`harness = false`) rather than `#[test]`s: the faults
//! run one after the other (they load the same two cores) and the output is
//! the table, not the test runner's lines.

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Mongo, Multivac, Redis};
use mongodb::bson::{Document, doc};
use redis::AsyncCommands;

/// What one POST got.
#[derive(Clone, Debug)]
struct Outcome {
    datum: String,
    sent: Instant,
    /// The HTTP status, or why there was none.
    status: Result<u16, String>,
    /// The `error` code of an error answer.
    code: Option<String>,
    retry_after: bool,
}

impl Outcome {
    fn accepted(&self) -> bool {
        self.status == Ok(202)
    }

    /// A 503 with Retry-After: the client is told to come back.
    fn refused(&self) -> bool {
        self.status == Ok(503) && self.retry_after
    }

    /// A refusal that says nothing was accepted (as opposed to
    /// `queue_unconfirmed` and `timeout`, which say it may have been).
    fn claims_nothing_accepted(&self) -> bool {
        self.refused()
            && !matches!(
                self.code.as_deref(),
                Some("queue_unconfirmed") | Some("timeout")
            )
    }
}

/// A server the load may send to, and whether it is in rotation (as an
/// endpoints controller would say from its `/readyz`).
struct Target {
    url: String,
    ready: AtomicBool,
}

/// A steady POST load: `tasks` clients, each sending one datum every
/// `pause` to the targets in rotation, round robin.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Outcome>>>,
}

/// Data sent so far, numbered across every load of the run.
static SENT: AtomicU64 = AtomicU64::new(0);

impl Load {
    fn start(
        targets: Arc<Vec<Target>>,
        tasks: usize,
        pause: Duration,
        datum: fn(u64) -> String,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let tasks = (0..tasks)
            .map(|task| {
                let (stop, client, targets) = (stop.clone(), client.clone(), targets.clone());
                tokio::spawn(async move {
                    let mut outcomes = Vec::new();
                    let mut turn = task;
                    while !stop.load(Ordering::Relaxed) {
                        let in_rotation: Vec<&Target> = targets
                            .iter()
                            .filter(|t| t.ready.load(Ordering::Relaxed))
                            .collect();
                        if in_rotation.is_empty() {
                            tokio::time::sleep(pause).await;
                            continue;
                        }
                        turn += 1;
                        let target = in_rotation[turn % in_rotation.len()];
                        let datum = datum(SENT.fetch_add(1, Ordering::Relaxed));
                        outcomes.push(post(&client, &target.url, datum).await);
                        tokio::time::sleep(pause).await;
                    }
                    outcomes
                })
            })
            .collect();
        Load { stop, tasks }
    }

    /// One server, always in rotation.
    fn on(server: &Multivac, tasks: usize, pause: Duration, datum: fn(u64) -> String) -> Load {
        Load::start(targets(&[server]), tasks, pause, datum)
    }

    async fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await.unwrap());
        }
        all
    }
}

fn targets(servers: &[&Multivac]) -> Arc<Vec<Target>> {
    Arc::new(
        servers
            .iter()
            .map(|s| Target {
                url: s.url("/multivac/data"),
                ready: AtomicBool::new(true),
            })
            .collect(),
    )
}

async fn post(client: &reqwest::Client, url: &str, datum: String) -> Outcome {
    let sent = Instant::now();
    let answer = client.post(url).form(&[("data", &datum)]).send().await;
    let (status, code, retry_after) = match answer {
        Ok(response) => {
            let status = response.status().as_u16();
            let retry_after = response.headers().contains_key("retry-after");
            let code = if status == 202 {
                None
            } else {
                response
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|b| b["error"].as_str().map(str::to_owned))
            };
            (Ok(status), code, retry_after)
        }
        Err(e) => (Err(e.to_string()), None, false),
    };
    Outcome {
        datum,
        sent,
        status,
        code,
        retry_after,
    }
}

/// A small datum that names itself, so each is told apart in MongoDB.
fn small(n: u64) -> String {
    format!("fault datum number{n} about entropy")
}

/// One line of the table.
struct Row {
    fault: &'static str,
    accepted: usize,
    refused: usize,
    failed: usize,
    lost: usize,
    duplicated: usize,
    recovered: Option<Duration>,
    /// Every way the figures are wrong; empty when the fault passed.
    problems: Vec<String>,
    note: String,
}

impl Row {
    fn new(fault: &'static str) -> Row {
        Row {
            fault,
            accepted: 0,
            refused: 0,
            failed: 0,
            lost: 0,
            duplicated: 0,
            recovered: None,
            problems: Vec::new(),
            note: String::new(),
        }
    }

    fn check(&mut self, ok: bool, problem: impl Into<String>) {
        if !ok {
            self.problems.push(problem.into());
        }
    }

    /// Counts the outcomes, and checks them against where every datum ended
    /// up: learned (MongoDB `data`) or dead-lettered.
    async fn account(&mut self, outcomes: &[Outcome], stored: &Stored) {
        self.accepted = outcomes.iter().filter(|o| o.accepted()).count();
        self.refused = outcomes.iter().filter(|o| o.refused()).count();
        self.failed = outcomes.len() - self.accepted - self.refused;
        for o in outcomes {
            let copies = stored.copies(&o.datum);
            if o.accepted() && copies == 0 {
                self.lost += 1;
            }
            if copies > 1 {
                self.duplicated += 1;
            }
            if o.claims_nothing_accepted() && copies > 0 {
                self.problems.push(format!(
                    "a datum refused with {:?} was stored anyway",
                    o.code
                ));
            }
        }
        self.check(self.lost == 0, format!("{} accepted data lost", self.lost));
        self.check(
            self.duplicated == 0,
            format!("{} data duplicated", self.duplicated),
        );
        self.check(self.accepted > 0, "no POST was accepted: no load");
    }
}

/// Where the data ended up: the texts in MongoDB's `data` collection and in
/// the dead-letter stream, with their copies.
struct Stored {
    copies: HashMap<String, usize>,
    dead: Vec<(String, String)>,
}

impl Stored {
    async fn read(redis: &Redis, mongo: &Mongo) -> Stored {
        let client = mongodb::Client::with_uri_str(mongo.uri()).await.unwrap();
        let data = client
            .database(&mongo.database)
            .collection::<Document>("data");
        let mut cursor = data
            .find(doc! {})
            .projection(doc! {"data": 1})
            .await
            .expect("reading MongoDB's data collection");
        let mut copies: HashMap<String, usize> = HashMap::new();
        while cursor
            .advance()
            .await
            .expect("reading MongoDB's data collection")
        {
            let text = cursor
                .current()
                .get_str("data")
                .unwrap_or_default()
                .to_owned();
            *copies.entry(text).or_default() += 1;
        }
        let mut conn = redis.conn().await;
        let dead: redis::streams::StreamRangeReply =
            conn.xrange_all("multivac:data:dead").await.unwrap();
        let dead: Vec<(String, String)> = dead
            .ids
            .iter()
            .map(|e| {
                (
                    e.get::<String>("data").unwrap_or_default(),
                    e.get::<String>("reason").unwrap_or_default(),
                )
            })
            .collect();
        for (text, _) in &dead {
            *copies.entry(text.clone()).or_default() += 1;
        }
        Stored { copies, dead }
    }

    fn copies(&self, datum: &str) -> usize {
        self.copies.get(datum).copied().unwrap_or(0)
    }
}

/// Waits until everything queued is learned or dead-lettered (backlog 0)
/// and MongoDB holds at least `learned` data; the time it took, or `None`
/// after `limit`.
async fn settled(
    redis: &Redis,
    mongo: &Mongo,
    learned: usize,
    limit: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let queue = redis.queue();
    let store = mongo.store().await;
    while started.elapsed() < limit {
        let backlog = queue.backlog().await.map(|b| b.total()).ok();
        let knowledge = store.knowledge().await.ok();
        if backlog == Some(0) && knowledge.is_some_and(|k| k.data_processed as usize >= learned) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Stops the load, waits until what it got accepted is learned (the time
/// from `since` is the recovery time) and accounts for every datum.
async fn finish(
    row: &mut Row,
    load: Load,
    redis: &Redis,
    mongo: &Mongo,
    since: Instant,
) -> (Vec<Outcome>, Stored) {
    let outcomes = load.stop().await;
    let accepted = outcomes.iter().filter(|o| o.accepted()).count();
    row.recovered = settled(redis, mongo, accepted, RECOVERY_LIMIT)
        .await
        .map(|_| since.elapsed());
    let stored = Stored::read(redis, mongo).await;
    row.account(&outcomes, &stored).await;
    (outcomes, stored)
}

const LOAD_TASKS: usize = 4;
/// Four clients sending every 8 ms: about 400 POSTs a second.
const PAUSE: Duration = Duration::from_millis(8);
const RECOVERY_LIMIT: Duration = Duration::from_secs(90);

/// MongoDB killed under load, restarted 3 s later: intake goes on (every
/// POST 202, the server ready), the answer comes from the last figures,
/// and everything is learned once MongoDB is back.
async fn mongodb_killed() -> Row {
    let mut row = Row::new("MongoDB killed under load and restarted");
    let redis = Redis::start();
    let mut mongo = Mongo::start_owned();
    let server = Multivac::server(&redis, &mongo, &[]);
    let _w1 = Multivac::worker(&redis, &mongo, "w1", &[]);
    let _w2 = Multivac::worker(&redis, &mongo, "w2", &[]);
    let load = Load::on(&server, LOAD_TASKS, PAUSE, small);
    tokio::time::sleep(Duration::from_secs(1)).await;
    mongo.stop();
    let down = Instant::now();
    let client = reqwest::Client::new();
    let mut slowest_answer = Duration::ZERO;
    let mut unready = 0;
    while down.elapsed() < Duration::from_secs(3) {
        let asked = Instant::now();
        let answer = client.get(server.url("/multivac")).send().await;
        slowest_answer = slowest_answer.max(asked.elapsed());
        row.check(
            answer.is_ok_and(|a| a.status() == 200),
            "GET /multivac did not answer 200 from the last figures during the outage",
        );
        let ready = client.get(server.url("/readyz")).send().await;
        if !ready.is_ok_and(|r| r.status() == 200) {
            unready += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    mongo.restart();
    let back = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    finish(&mut row, load, &redis, &mongo, back).await;
    row.check(
        row.refused + row.failed == 0,
        "intake stopped while MongoDB was down",
    );
    row.check(
        unready == 0,
        format!("/readyz was not 200 {unready} times during the outage"),
    );
    row.check(
        slowest_answer < Duration::from_secs(1),
        format!("GET /multivac took {slowest_answer:?} during the outage"),
    );
    row.note = format!(
        "slowest GET /multivac during the outage {} ms",
        slowest_answer.as_millis()
    );
    row
}

/// Redis at its maxmemory (noeviction) under load of 16 KiB data, no worker
/// running: POST answers 503 queue_full with Retry-After, nothing accepted
/// is lost; a worker started then drains it and POST is accepted again.
async fn redis_full() -> Row {
    let mut row = Row::new("Redis at maxmemory under load");
    let redis =
        Redis::start_configured(&["--maxmemory", "12mb", "--maxmemory-policy", "noeviction"]);
    let mongo = Mongo::start();
    let server = Multivac::server(&redis, &mongo, &[]);
    fn large(n: u64) -> String {
        format!("large datum number{n} {}", "padding ".repeat(2048))
    }
    let load = Load::on(&server, LOAD_TASKS, PAUSE, large);
    let client = reqwest::Client::new();
    let url = server.url("/multivac/data");
    let mut probes = Vec::new();
    let full_at = Instant::now();
    let mut full = false;
    while full_at.elapsed() < Duration::from_secs(30) {
        let probe = post(&client, &url, large(SENT.fetch_add(1, Ordering::Relaxed))).await;
        full = probe.code.as_deref() == Some("queue_full");
        probes.push(probe);
        if full {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    row.check(full, "Redis never answered queue_full");
    // Full for a while under load.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _worker = Multivac::worker(&redis, &mongo, "drainer", &[]);
    let drain_start = Instant::now();
    let mut room_again = None;
    while drain_start.elapsed() < Duration::from_secs(30) {
        let probe = post(&client, &url, large(SENT.fetch_add(1, Ordering::Relaxed))).await;
        let accepted = probe.accepted();
        probes.push(probe);
        if accepted {
            room_again = Some(drain_start.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut outcomes = load.stop().await;
    outcomes.extend(probes);
    let accepted = outcomes.iter().filter(|o| o.accepted()).count();
    row.check(
        settled(&redis, &mongo, accepted, RECOVERY_LIMIT)
            .await
            .is_some(),
        "the queue was not drained",
    );
    row.recovered = room_again;
    let stored = Stored::read(&redis, &mongo).await;
    row.account(&outcomes, &stored).await;
    let full_answers = outcomes
        .iter()
        .filter(|o| o.code.as_deref() == Some("queue_full"))
        .count();
    row.check(
        full_answers > 0,
        "no POST of the load was refused as queue_full",
    );
    row.check(
        row.failed == 0,
        format!("{} POSTs failed instead of a 503", row.failed),
    );
    row.check(
        room_again.is_some(),
        "POST was not accepted again after the drain",
    );
    row.note = format!(
        "{full_answers} x 503 queue_full; 202 again {} ms after a worker started",
        room_again.unwrap_or_default().as_millis()
    );
    row
}

/// Redis SIGKILLed under load and restarted 1 s later from its append-only
/// file (appendfsync always, as the operator runs it): every 202 survives.
async fn redis_killed() -> Row {
    let mut row = Row::new("Redis kill -9, restart from AOF, under load");
    let mut redis = Redis::start_persistent();
    let mongo = Mongo::start();
    let server = Multivac::server(&redis, &mongo, &[]);
    let _w1 = Multivac::worker(&redis, &mongo, "w1", &[]);
    let _w2 = Multivac::worker(&redis, &mongo, "w2", &[]);
    let load = Load::on(&server, LOAD_TASKS, PAUSE, small);
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.restart();
    let back = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (outcomes, _) = finish(&mut row, load, &redis, &mongo, back).await;
    row.check(row.refused > 0, "no POST was refused while Redis was down");
    row.check(
        row.failed == 0,
        format!("{} POSTs failed instead of a 503", row.failed),
    );
    let unconfirmed = outcomes
        .iter()
        .filter(|o| o.code.as_deref() == Some("queue_unconfirmed"))
        .count();
    row.note =
        format!("appendfsync always; {unconfirmed} of the 503s unconfirmed (sent as Redis died)");
    row
}

/// Of two workers, one is SIGKILLed while it holds a batch: the other
/// reclaims it; every datum is learned exactly once.
async fn worker_killed() -> Row {
    let mut row = Row::new("a worker SIGKILLed mid-batch");
    let redis = Redis::start();
    let mongo = Mongo::start();
    let server = Multivac::server(&redis, &mongo, &[]);
    let claim = [
        ("MULTIVAC_CLAIM_IDLE_MS", "1000"),
        ("MULTIVAC_BATCH_SIZE", "100"),
    ];
    let mut victim = Multivac::worker(&redis, &mongo, "victim", &claim);
    let _survivor = Multivac::worker(&redis, &mongo, "survivor", &claim);
    let load = Load::on(&server, LOAD_TASKS, PAUSE, small);
    let started = Instant::now();
    let mut held = 0;
    while started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        victim.freeze();
        held = redis.pending_of("victim").await;
        if held > 0 && started.elapsed() > Duration::from_secs(1) {
            break;
        }
        victim.thaw();
    }
    victim.kill9();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, stored) = finish(&mut row, load, &redis, &mongo, killed).await;
    row.check(held > 0, "the victim held no batch when killed");
    row.check(
        row.refused + row.failed == 0,
        "intake was disturbed by a worker's death",
    );
    row.check(
        stored.dead.is_empty(),
        format!("{} entries dead-lettered", stored.dead.len()),
    );
    row.note = format!("{held} entries held by the killed worker");
    row
}

/// The memory limit a worker runs under: a cgroup (v1 or v2) when this
/// process may make one, else `prlimit --as`.
enum Cage {
    Cgroup { dir: PathBuf, kind: &'static str },
    Prlimit(u64),
}

impl Cage {
    fn new(bytes: u64) -> Result<Cage, String> {
        let name = format!("multivac-faults-{}", std::process::id());
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        // v1: the memory controller's own hierarchy, under our cgroup.
        if let Some(path) = own
            .lines()
            .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_owned()))
        {
            let dir = PathBuf::from("/sys/fs/cgroup/memory")
                .join(path.trim_start_matches('/'))
                .join(&name);
            if std::fs::create_dir_all(&dir).is_ok()
                && std::fs::write(dir.join("memory.limit_in_bytes"), bytes.to_string()).is_ok()
            {
                // No swap to escape to (ignored where swap accounting is off).
                let _ = std::fs::write(dir.join("memory.memsw.limit_in_bytes"), bytes.to_string());
                return Ok(Cage::Cgroup {
                    dir,
                    kind: "cgroup v1 memory.limit_in_bytes",
                });
            }
        }
        // v2: a cgroup of its own beside the root's, where controllers may be enabled.
        let root = PathBuf::from("/sys/fs/cgroup");
        if std::fs::read_to_string(root.join("cgroup.controllers"))
            .is_ok_and(|c| c.contains("memory"))
        {
            let dir = root.join(&name);
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+memory");
            if std::fs::create_dir_all(&dir).is_ok()
                && std::fs::write(dir.join("memory.max"), bytes.to_string()).is_ok()
            {
                let _ = std::fs::write(dir.join("memory.swap.max"), "0");
                return Ok(Cage::Cgroup {
                    dir,
                    kind: "cgroup v2 memory.max",
                });
            }
        }
        let prlimit = std::process::Command::new("prlimit")
            .arg("--version")
            .output();
        if prlimit.is_ok_and(|o| o.status.success()) {
            return Ok(Cage::Prlimit(bytes));
        }
        Err(
            "no way to limit a worker's memory: run as root on a machine with cgroups \
             (v1 or v2), or install util-linux for prlimit"
                .into(),
        )
    }

    /// The wrapper that runs a command inside the cage.
    fn wrapper(&self) -> Vec<String> {
        match self {
            Cage::Cgroup { dir, .. } => vec![
                "sh".into(),
                "-c".into(),
                format!(
                    "echo $$ > {}/cgroup.procs && exec \"$0\" \"$@\"",
                    dir.display()
                ),
            ],
            // Address space is not resident memory: give the runtime's
            // reservations (thread stacks, allocator arenas) room on top.
            Cage::Prlimit(bytes) => vec!["prlimit".into(), format!("--as={}", bytes + (1 << 30))],
        }
    }

    fn describe(&self) -> String {
        match self {
            Cage::Cgroup { kind, .. } => (*kind).to_owned(),
            Cage::Prlimit(_) => "prlimit --as".to_owned(),
        }
    }
}

impl Drop for Cage {
    fn drop(&mut self) {
        if let Cage::Cgroup { dir, .. } = self {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A worker whose batch needs more memory than its limit (a real one: a
/// cgroup) is killed; restarted under the same name (as the kubelet does)
/// it tries the entries it held one at a time, which fit: all are learned,
/// none is dead-lettered, the crash loop ends.
async fn worker_out_of_memory() -> Row {
    let mut row = Row::new("a worker's batch exceeds its memory limit");
    const LIMIT: u64 = 96 << 20;
    let cage = match Cage::new(LIMIT) {
        Ok(cage) => cage,
        Err(e) => {
            row.problems.push(e);
            return row;
        }
    };
    let redis = Redis::start();
    let mongo = Mongo::start();
    let server = Multivac::server(&redis, &mongo, &[]);
    // 300 data of about 60 KB from a 40,000-word vocabulary.
    fn big(n: u64) -> String {
        let mut state = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut text = String::with_capacity(61_000);
        while text.len() < 60_000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            text.push_str(&format!("w{} ", (state >> 33) % 40_000));
        }
        text
    }
    let client = reqwest::Client::new();
    let url = server.url("/multivac/data");
    let mut outcomes = Vec::new();
    for n in 0..300 {
        outcomes.push(post(&client, &url, big(n)).await);
    }
    let accepted = outcomes.iter().filter(|o| o.accepted()).count();
    // The whole read batch in one bulk write: far over the limit.
    let env = [
        ("MULTIVAC_BATCH_BYTES", "1000000000"),
        ("MULTIVAC_CLAIM_IDLE_MS", "1000"),
    ];
    let started = Instant::now();
    let mut worker = Multivac::worker_wrapped(&redis, &mongo, "caged", &env, &cage.wrapper());
    let mut kills = 0;
    let mut first_kill: Option<Instant> = None;
    let store = mongo.store().await;
    while started.elapsed() < RECOVERY_LIMIT {
        if let Some(status) = worker.exited() {
            use std::os::unix::process::ExitStatusExt;
            row.check(
                status.signal().is_some(),
                format!("the worker exited with {status}, not by the limit"),
            );
            kills += 1;
            first_kill.get_or_insert_with(Instant::now);
            // The kubelet restarts it under the same name (after a pause).
            tokio::time::sleep(Duration::from_millis(500)).await;
            worker = Multivac::worker_wrapped(&redis, &mongo, "caged", &env, &cage.wrapper());
            continue;
        }
        let learned = store
            .knowledge()
            .await
            .is_ok_and(|k| k.data_processed as usize >= accepted);
        let drained = redis.queue().backlog().await.is_ok_and(|b| b.total() == 0);
        if learned && drained {
            row.recovered = first_kill.map(|t| t.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stored = Stored::read(&redis, &mongo).await;
    row.account(&outcomes, &stored).await;
    row.check(kills > 0, "the worker was never killed by its memory limit");
    row.check(
        stored.dead.is_empty(),
        format!("{} entries dead-lettered", stored.dead.len()),
    );
    row.note = format!(
        "{} MiB limit ({}), {kills} kill(s)",
        LIMIT >> 20,
        cage.describe()
    );
    drop(worker);
    row
}

/// A datum MongoDB refuses for good (17 MB: over its 16 MiB document limit;
/// the server takes up to 20 MB here) among a load of small ones: it alone
/// is dead-lettered, with the reason; the rest of its batch is learned.
async fn datum_refused() -> Row {
    let mut row = Row::new("a datum MongoDB refuses");
    let redis = Redis::start();
    let mongo = Mongo::start();
    let server = Multivac::server(&redis, &mongo, &[("MULTIVAC_MAX_DATA_BYTES", "20000000")]);
    let _worker = Multivac::worker(&redis, &mongo, "w1", &[]);
    let load = Load::on(&server, LOAD_TASKS, PAUSE, small);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let huge = "enormous ".repeat(17_000_000 / 9);
    let client = reqwest::Client::new();
    let sent = post(&client, &server.url("/multivac/data"), huge.clone()).await;
    let posted = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut outcomes = load.stop().await;
    row.check(
        sent.accepted(),
        format!("the 17 MB datum got {:?}", sent.status),
    );
    outcomes.push(sent);
    let accepted = outcomes.iter().filter(|o| o.accepted()).count() - 1;
    row.recovered = settled(&redis, &mongo, accepted, RECOVERY_LIMIT)
        .await
        .map(|_| posted.elapsed());
    let stored = Stored::read(&redis, &mongo).await;
    row.account(&outcomes, &stored).await;
    let reasons: Vec<&str> = stored.dead.iter().map(|(_, r)| r.as_str()).collect();
    row.check(
        stored.dead.len() == 1 && stored.dead[0].0.len() == huge.len(),
        format!("dead letters: {reasons:?}"),
    );
    row.check(
        reasons.iter().all(|r| r.contains("BSONObjectTooLarge")),
        format!("reasons: {reasons:?}"),
    );
    row.note = "1 dead letter: BSONObjectTooLarge".into();
    row
}

/// Two servers behind a rotation that follows their /readyz every 100 ms
/// (as an endpoints controller does); one gets SIGTERM under load with a
/// 2 s drain: not one request fails, it exits 0 after the drain.
async fn server_terminated() -> Row {
    let mut row = Row::new("SIGTERM of a server under load");
    let redis = Redis::start();
    let mongo = Mongo::start();
    let drain = [("MULTIVAC_DRAIN_MS", "2000")];
    let mut leaving = Multivac::server(&redis, &mongo, &drain);
    let staying = Multivac::server(&redis, &mongo, &drain);
    let _worker = Multivac::worker(&redis, &mongo, "w1", &[]);
    let rotation = targets(&[&leaving, &staying]);
    let probing = Arc::new(AtomicBool::new(true));
    let prober = {
        let (rotation, probing) = (rotation.clone(), probing.clone());
        let ready_urls: Vec<String> = [&leaving, &staying]
            .iter()
            .map(|s| s.url("/readyz"))
            .collect();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            while probing.load(Ordering::Relaxed) {
                for (target, url) in rotation.iter().zip(&ready_urls) {
                    let ready = client
                        .get(url)
                        .timeout(Duration::from_millis(500))
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200);
                    target.ready.store(ready, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let load = Load::start(rotation.clone(), LOAD_TASKS, PAUSE, small);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sigterm = Instant::now();
    let pid = leaving.pid().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    row.check(sent.is_ok_and(|s| s.success()), "kill -TERM failed");
    let status = tokio::task::block_in_place(|| leaving.wait(Duration::from_secs(30)));
    let exited = sigterm.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let outcomes = load.stop().await;
    probing.store(false, Ordering::Relaxed);
    let _ = prober.await;
    let accepted = outcomes.iter().filter(|o| o.accepted()).count();
    // Recovered: the rotation is steady again once the old server is gone.
    row.recovered = settled(&redis, &mongo, accepted, RECOVERY_LIMIT)
        .await
        .map(|_| exited);
    let stored = Stored::read(&redis, &mongo).await;
    row.account(&outcomes, &stored).await;
    let during = outcomes
        .iter()
        .filter(|o| o.sent >= sigterm && o.sent.duration_since(sigterm) < Duration::from_secs(2))
        .count();
    row.check(
        row.refused + row.failed == 0,
        format!("{} requests failed", row.refused + row.failed),
    );
    row.check(
        status.code() == Some(0),
        format!("the server exited with {status}"),
    );
    row.check(
        exited >= Duration::from_secs(2),
        format!("it exited {exited:?} after SIGTERM, before the 2 s drain ended"),
    );
    row.check(during > 0, "no request was sent during the drain");
    row.note = format!(
        "{during} requests during the 2 s drain; exit 0 after {} ms",
        exited.as_millis()
    );
    row
}

type Fault = fn() -> Pin<Box<dyn Future<Output = Row> + Send>>;

fn main() -> ExitCode {
    let faults: [(&str, Fault); 7] = [
        ("MongoDB killed under load and restarted", || {
            Box::pin(mongodb_killed())
        }),
        ("Redis at maxmemory under load", || Box::pin(redis_full())),
        ("Redis kill -9, restart from AOF, under load", || {
            Box::pin(redis_killed())
        }),
        ("a worker SIGKILLed mid-batch", || Box::pin(worker_killed())),
        ("a worker's batch exceeds its memory limit", || {
            Box::pin(worker_out_of_memory())
        }),
        ("a datum MongoDB refuses", || Box::pin(datum_refused())),
        ("SIGTERM of a server under load", || {
            Box::pin(server_terminated())
        }),
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let started = Instant::now();
    let mut rows = Vec::new();
    for (name, fault) in faults {
        eprintln!("fault: {name} ...");
        let row = runtime.block_on(async move {
            match tokio::spawn(fault()).await {
                Ok(row) => row,
                Err(e) => {
                    let mut row = Row::new(name);
                    row.problems
                        .push(format!("the fault's harness panicked: {e}"));
                    row
                }
            }
        });
        rows.push(row);
    }
    println!();
    println!(
        "{:<44} {:>8} {:>8} {:>6} {:>5} {:>5} {:>10}  {:<6} note",
        "fault", "accepted", "refused", "failed", "lost", "dup", "recovered", "result"
    );
    for row in &rows {
        let recovered = row
            .recovered
            .map(|d| format!("{:.1} s", d.as_secs_f64()))
            .unwrap_or_else(|| "never".into());
        let result = if row.problems.is_empty() {
            "ok"
        } else {
            "FAIL"
        };
        println!(
            "{:<44} {:>8} {:>8} {:>6} {:>5} {:>5} {:>10}  {:<6} {}",
            row.fault,
            row.accepted,
            row.refused,
            row.failed,
            row.lost,
            row.duplicated,
            recovered,
            result,
            row.note
        );
        for problem in &row.problems {
            println!("{:<44}   - {problem}", "");
        }
    }
    let failed = rows.iter().filter(|r| !r.problems.is_empty()).count();
    println!(
        "faults: {} passed, {failed} failed ({:.0} s)",
        rows.len() - failed,
        started.elapsed().as_secs_f64()
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
