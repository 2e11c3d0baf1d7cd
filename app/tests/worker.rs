//! The workers against a real Redis and a real MongoDB-compatible server:
//! idempotent redelivery, SIGKILL mid-batch, MongoDB outages, SIGTERM drain,
//! dead letters and heartbeats.

mod common;

use std::time::Duration;

use common::{Mongo, Multivac, Redis, eventually};
use futures_util::future::join_all;
use multivac::{Backlog, Consumer, Knowledge, Learned, Payload, Queue, Store};
use redis::AsyncCommands;
use reqwest::StatusCode;

async fn push_all(queue: &Queue, data: impl Iterator<Item = String>) {
    let data: Vec<String> = data.collect();
    for chunk in data.chunks(500) {
        let pushed = join_all(chunk.iter().map(|d| queue.push(d))).await;
        for id in pushed {
            id.expect("XADD");
        }
    }
}

async fn wait_all_learned(queue: &Queue, store: &Store, data: u64, timeout: Duration) -> Knowledge {
    eventually(
        timeout,
        &format!("{data} data to be learned and acknowledged"),
        || async {
            let backlog = queue.backlog().await.ok()?;
            let knowledge = store.knowledge().await.ok()?;
            (backlog == Backlog::default() && knowledge.data_processed >= data).then_some(knowledge)
        },
    )
    .await
}

async fn pending_of(redis: &Redis, consumer: &str) -> u64 {
    let mut conn = redis.conn().await;
    let reply: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
        .arg("multivac:data")
        .arg("multivac-workers")
        .arg("-")
        .arg("+")
        .arg(100_000)
        .arg(consumer)
        .query_async(&mut conn)
        .await
        .unwrap();
    reply.ids.len() as u64
}

/// A worker that died after its MongoDB writes and before XACK: another
/// worker reclaims the entries, writes them again and acknowledges them, and
/// no count changes.
#[tokio::test(flavor = "multi_thread")]
async fn redelivery_after_writes_without_ack_changes_no_count() {
    let redis = Redis::start();
    let mongo = Mongo::start();
    let queue = redis.queue();
    let store = mongo.store().await;
    queue.ensure_group().await.unwrap();
    // "redelivered", "datum" and fifty "numberN": 52 concepts.
    push_all(
        &queue,
        (0..50).map(|i| format!("redelivered datum number{i}")),
    )
    .await;

    // The doomed worker: reads, writes everything, never acknowledges.
    let mut doomed = Consumer::connect(
        &redis.url(),
        "doomed",
        Duration::from_secs(5),
        Duration::from_secs(1),
    )
    .unwrap();
    let entries = doomed.read_new(100, Duration::from_secs(1)).await.unwrap();
    assert_eq!(entries.len(), 50);
    let learned: Vec<Learned> = entries
        .into_iter()
        .map(|e| match e.payload {
            Payload::Datum(text) => Learned::new(e.id, text),
            Payload::Malformed { reason, .. } => panic!("{reason}"),
        })
        .collect();
    store.write_batch(&learned).await.unwrap();
    drop(doomed);
    let before = store.knowledge().await.unwrap();
    assert_eq!(
        before,
        Knowledge {
            concepts: 52,
            data_processed: 50
        }
    );
    assert_eq!(pending_of(&redis, "doomed").await, 50);

    let worker = Multivac::worker(
        &redis,
        &mongo,
        "rescuer",
        &[("MULTIVAC_CLAIM_IDLE_MS", "300")],
    );
    let after = wait_all_learned(&queue, &store, 50, Duration::from_secs(30)).await;
    assert_eq!(after, before, "a redelivered entry changed the counts");
    assert_eq!(pending_of(&redis, "doomed").await, 0);
    assert_eq!(worker.metric("multivac_worker_reclaimed_total").await, 50.0);
    assert_eq!(worker.metric("multivac_worker_processed_total").await, 50.0);
    assert_eq!(queue.dead_letters().await.unwrap(), 0);
}

/// Under a load of 10,000 data, one of two workers is SIGKILLed while it
/// holds a batch: every datum is still learned exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_batch_under_10000_data_learns_each_exactly_once() {
    const N: u64 = 10_000;
    let redis = Redis::start();
    let mongo = Mongo::start();
    let queue = redis.queue();
    let store = mongo.store().await;
    queue.ensure_group().await.unwrap();
    // 3,000 distinct "cN" words plus "datum" and "shared": 3,002 concepts.
    push_all(
        &queue,
        (0..N).map(|i| format!("Datum c{} shared", i % 3000)),
    )
    .await;

    let claim = [
        ("MULTIVAC_CLAIM_IDLE_MS", "1000"),
        ("MULTIVAC_BATCH_SIZE", "250"),
    ];
    let mut victim = Multivac::worker(&redis, &mongo, "victim", &claim);
    let survivor = Multivac::worker(&redis, &mongo, "survivor", &claim);
    // Kill the victim while it holds delivered, unacknowledged entries:
    // freeze it, check that it holds some, and only then SIGKILL it.
    let orphaned = eventually(
        Duration::from_secs(60),
        "the victim to hold a batch after some progress",
        || async {
            let progress = store.knowledge().await.ok()?.data_processed;
            if progress < 500 {
                return None;
            }
            victim.freeze();
            let held = pending_of(&redis, "victim").await;
            if held == 0 {
                victim.thaw();
                return None;
            }
            Some(held)
        },
    )
    .await;
    victim.kill9();
    assert_eq!(pending_of(&redis, "victim").await, orphaned);
    assert!(orphaned > 0, "the victim died holding no batch");

    let knowledge = wait_all_learned(&queue, &store, N, Duration::from_secs(180)).await;
    assert_eq!(
        knowledge,
        Knowledge {
            concepts: 3002,
            data_processed: N
        }
    );
    assert_eq!(pending_of(&redis, "victim").await, 0);
    assert!(survivor.metric("multivac_worker_reclaimed_total").await >= orphaned as f64);
    assert_eq!(queue.dead_letters().await.unwrap(), 0);
    let mut conn = redis.conn().await;
    let left: u64 = conn.xlen("multivac:data").await.unwrap();
    assert_eq!(left, 0, "acknowledged entries are deleted from the stream");
}

/// MongoDB down: the worker retries and acknowledges nothing; once MongoDB
/// is back every datum is learned.
#[tokio::test(flavor = "multi_thread")]
async fn mongodb_down_acks_nothing_and_all_is_learned_after_it_returns() {
    let redis = Redis::start();
    let mut mongo = Mongo::start_owned();
    let queue = redis.queue();
    let worker = Multivac::worker(
        &redis,
        &mongo,
        "patient",
        &[("MULTIVAC_BACKEND_TIMEOUT_MS", "500")],
    );
    let server = Multivac::server(&redis, &mongo, &[("MULTIVAC_BACKEND_TIMEOUT_MS", "500")]);
    mongo.stop();

    let client = reqwest::Client::new();
    for i in 0..200 {
        let response = client
            .post(server.url("/multivac/data"))
            .form(&[("data", format!("outage datum{i}"))])
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::ACCEPTED,
            "intake needs only Redis"
        );
    }
    eventually(
        Duration::from_secs(30),
        "the worker to fail writing",
        || async {
            (worker.metric("multivac_worker_store_errors_total").await >= 2.0).then_some(())
        },
    )
    .await;
    let backlog = queue.backlog().await.unwrap();
    assert_eq!(
        backlog.total(),
        200,
        "something was acknowledged while MongoDB was down: {backlog:?}"
    );
    assert_eq!(worker.metric("multivac_worker_processed_total").await, 0.0);
    let question = reqwest::get(server.url("/multivac")).await.unwrap();
    assert_eq!(question.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(question.headers()["retry-after"], "1");
    assert_eq!(
        reqwest::get(worker.url("/readyz")).await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    mongo.restart();
    let store = mongo.store().await;
    let knowledge = wait_all_learned(&queue, &store, 200, Duration::from_secs(60)).await;
    assert_eq!(
        knowledge,
        Knowledge {
            concepts: 201,
            data_processed: 200
        }
    );
    assert_eq!(queue.dead_letters().await.unwrap(), 0);
    assert_eq!(
        reqwest::get(worker.url("/readyz")).await.unwrap().status(),
        StatusCode::OK
    );
}

/// SIGTERM: the worker stops reading, finishes its in-flight batch,
/// removes its heartbeat and exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_the_batch_in_flight_and_exits_zero() {
    let redis = Redis::start();
    let mongo = Mongo::start();
    let queue = redis.queue();
    let store = mongo.store().await;
    queue.ensure_group().await.unwrap();
    push_all(&queue, (0..5000).map(|i| format!("drain w{i}"))).await;
    let mut worker = Multivac::worker(&redis, &mongo, "drainer", &[("MULTIVAC_BATCH_SIZE", "100")]);
    eventually(Duration::from_secs(30), "the worker to be busy", || async {
        (store.knowledge().await.ok()?.data_processed > 0
            && pending_of(&redis, "drainer").await > 0)
            .then_some(())
    })
    .await;
    let status = worker.terminate(Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
    assert_eq!(
        pending_of(&redis, "drainer").await,
        0,
        "the in-flight batch was not finished"
    );
    let knowledge = store.knowledge().await.unwrap();
    let backlog = queue.backlog().await.unwrap();
    assert_eq!(
        knowledge.data_processed + backlog.total(),
        5000,
        "data lost or duplicated"
    );
    assert!(
        queue.live_workers().await.unwrap().is_empty(),
        "the heartbeat outlived the worker"
    );
}

/// Entries that can never be learned go to the dead-letter stream with
/// their bytes, and so do entries delivered too often; the rest is learned.
#[tokio::test(flavor = "multi_thread")]
async fn unlearnable_and_too_often_delivered_entries_are_dead_lettered() {
    let redis = Redis::start();
    let mongo = Mongo::start();
    let queue = redis.queue();
    let store = mongo.store().await;
    queue.ensure_group().await.unwrap();
    let mut conn = redis.conn().await;
    let _: String = conn
        .xadd("multivac:data", "*", &[("data", &b"\xff\xfe"[..])])
        .await
        .unwrap();
    let _: String = conn
        .xadd("multivac:data", "*", &[("other", "no data field")])
        .await
        .unwrap();
    push_all(&queue, ["poison pill".to_owned()].into_iter()).await;

    // Deliver the three entries three times to consumers that die at once.
    let mut ghost = Consumer::connect(
        &redis.url(),
        "ghost",
        Duration::from_secs(5),
        Duration::from_secs(1),
    )
    .unwrap();
    assert_eq!(
        ghost
            .read_new(10, Duration::from_secs(1))
            .await
            .unwrap()
            .len(),
        3
    );
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            ghost
                .reclaim(Duration::from_millis(10), 10)
                .await
                .unwrap()
                .len(),
            3
        );
    }
    push_all(&queue, ["healthy datum".to_owned()].into_iter()).await;
    tokio::time::sleep(Duration::from_millis(20)).await;

    let worker = Multivac::worker(
        &redis,
        &mongo,
        "judge",
        &[
            ("MULTIVAC_CLAIM_IDLE_MS", "10"),
            ("MULTIVAC_MAX_DELIVERIES", "3"),
        ],
    );
    let knowledge = wait_all_learned(&queue, &store, 1, Duration::from_secs(30)).await;
    assert_eq!(
        knowledge,
        Knowledge {
            concepts: 2,
            data_processed: 1
        }
    );
    assert_eq!(
        worker.metric("multivac_worker_dead_lettered_total").await,
        3.0
    );
    let dead: redis::streams::StreamRangeReply =
        conn.xrange_all("multivac:data:dead").await.unwrap();
    let mut reasons: Vec<String> = dead
        .ids
        .iter()
        .map(|e| e.get::<String>("reason").unwrap())
        .collect();
    reasons.sort();
    assert!(reasons[0].starts_with("delivered 4 times"), "{reasons:?}");
    assert_eq!(reasons[1], "the data field is not valid UTF-8");
    assert_eq!(reasons[2], "the entry has no data field");
    let raw: Vec<Vec<u8>> = dead
        .ids
        .iter()
        .filter_map(|e| e.get::<Vec<u8>>("data"))
        .collect();
    assert!(
        raw.contains(&b"\xff\xfe".to_vec()),
        "the bad bytes were not kept"
    );
    assert!(raw.contains(&b"poison pill".to_vec()));
}

/// /zzz lists the workers seen alive; the worker's probes answer with and
/// without a trailing slash.
#[tokio::test(flavor = "multi_thread")]
async fn worker_probes_answer_with_and_without_trailing_slash_and_heartbeat_shows_in_zzz() {
    let redis = Redis::start();
    let mongo = Mongo::start();
    let worker = Multivac::worker(&redis, &mongo, "visible", &[]);
    let server = Multivac::server(&redis, &mongo, &[]);
    for path in ["/healthz", "/readyz", "/metrics"] {
        for spelling in [path.to_owned(), format!("{path}/")] {
            let response = reqwest::get(worker.url(&spelling)).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "worker GET {spelling}");
        }
    }
    let zzz: serde_json::Value = eventually(Duration::from_secs(10), "the heartbeat", || async {
        let zzz: serde_json::Value = reqwest::get(server.url("/zzz/"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (!zzz["workers"].as_array()?.is_empty()).then_some(zzz)
    })
    .await;
    assert_eq!(zzz["workers"][0]["consumer"], "visible");
}
