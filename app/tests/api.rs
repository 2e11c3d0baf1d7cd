//! The HTTP API against a real Redis and a real MongoDB-compatible server:
//! the seed's flow, every bad input, trailing slashes, Redis outages.

mod common;

use std::time::Duration;

use common::{Mongo, Multivac, Redis, eventually};
use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::Value;

const DATA: &str = "/multivac/data";

async fn stream_len(redis: &Redis) -> u64 {
    let mut conn = redis.conn().await;
    conn.xlen("multivac:data").await.unwrap()
}

async fn answer_json(server: &Multivac) -> Value {
    reqwest::Client::new()
        .get(server.url("/multivac"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn post_form(server: &Multivac, data: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url(DATA))
        .form(&[("data", data)])
        .send()
        .await
        .unwrap()
}

/// The seed's "Testing MultiVAC": question, feed data, let workers process,
/// question again, until the answer becomes meaningful; it flips exactly
/// when the distinct concepts reach MULTIVAC_REQUIRED_CONCEPTS.
#[tokio::test(flavor = "multi_thread")]
async fn seed_flow_answer_flips_exactly_at_the_threshold() {
    let redis = Redis::start();
    let mongo = Mongo::start();
    let server = Multivac::server(
        &redis,
        &mongo,
        &[
            ("MULTIVAC_REQUIRED_CONCEPTS", "6"),
            ("MULTIVAC_STATS_TTL_MS", "0"),
        ],
    );
    let _w1 = Multivac::worker(&redis, &mongo, "w1", &[]);
    let _w2 = Multivac::worker(&redis, &mongo, "w2", &[]);

    let welcome = reqwest::get(server.url("/")).await.unwrap();
    assert_eq!(welcome.status(), StatusCode::OK);
    assert_eq!(welcome.text().await.unwrap(), "Welcome to MultiVAC!");

    let plain = reqwest::get(server.url("/multivac")).await.unwrap();
    assert_eq!(plain.status(), StatusCode::OK);
    assert_eq!(
        plain.text().await.unwrap(),
        "INSUFFICIENT DATA FOR MEANINGFUL ANSWER."
    );
    let zzz: Value = reqwest::get(server.url("/zzz/"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(zzz["state"], "asleep");

    // (datum, distinct concepts known after it is learned); the threshold is
    // 6, so the answer must flip on the fifth datum and not before.
    let feed = [
        ("Entropy, entropy!", 1),
        ("Can ENTROPY be reversed?", 4), // + can, be, reversed
        ("Reversed... be can", 4),       // nothing new
        ("the", 5),                      // one short
        ("STARS, the stars", 6),         // exactly the threshold
        ("Stars die", 7),
    ];
    for (i, (datum, concepts)) in feed.iter().enumerate() {
        let response = reqwest::Client::new()
            .post(server.url(DATA))
            .multipart(reqwest::multipart::Form::new().text("data", datum.to_string()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["response"], "MultiVAC updated!");
        assert!(
            body["id"].as_str().unwrap().contains('-'),
            "a stream entry id: {body}"
        );

        let processed = i as u64 + 1;
        let answer = eventually(
            Duration::from_secs(20),
            "the datum to be learned",
            || async {
                let answer = answer_json(&server).await;
                (answer["knowledge"]["data_processed"] == processed).then_some(answer)
            },
        )
        .await;
        assert_eq!(
            answer["knowledge"]["concepts"], *concepts,
            "after {datum:?}: {answer}"
        );
        assert_eq!(answer["knowledge"]["required"], 6);
        assert_eq!(
            answer["question"],
            "How can the entropy of the universe be reversed?"
        );
        let meaningful = *concepts >= 6;
        assert_eq!(answer["meaningful"], meaningful, "{answer}");
        let expected = if meaningful {
            "LET THERE BE LIGHT!"
        } else {
            "INSUFFICIENT DATA FOR MEANINGFUL ANSWER."
        };
        assert_eq!(answer["answer"], expected);
        let plain = reqwest::get(server.url("/multivac"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(plain, expected, "plain answer after {processed} data");
    }

    let zzz: Value = reqwest::get(server.url("/zzz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(zzz["state"], "enlightened");
    assert_eq!(zzz["backlog"], 0);
    assert_eq!(zzz["data_processed"], 6);
    assert_eq!(zzz["concepts"], 7);
    let workers: Vec<&str> = zzz["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["consumer"].as_str().unwrap())
        .collect();
    assert_eq!(workers, vec!["w1", "w2"]);
}

/// Every body encoding the seed's clients use is accepted, and the datum in
/// Redis is exactly what was sent.
#[tokio::test(flavor = "multi_thread")]
async fn accepts_form_multipart_and_json() {
    let redis = Redis::start();
    let mongo = Mongo::start();
    let server = Multivac::server(&redis, &mongo, &[]);
    let client = reqwest::Client::new();
    let text = "Ünïcode & spaces + symbols = ok";
    let responses = [
        post_form(&server, text).await,
        client
            .post(server.url(DATA))
            .multipart(
                reqwest::multipart::Form::new()
                    .text("other", "x")
                    .text("data", text),
            )
            .send()
            .await
            .unwrap(),
        client
            .post(server.url(DATA))
            .json(&serde_json::json!({"data": text}))
            .send()
            .await
            .unwrap(),
    ];
    for response in responses {
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    let mut conn = redis.conn().await;
    let entries: redis::streams::StreamRangeReply = conn.xrange_all("multivac:data").await.unwrap();
    assert_eq!(entries.ids.len(), 3);
    for entry in entries.ids {
        assert_eq!(entry.get::<String>("data").as_deref(), Some(text));
    }
}

async fn assert_error(response: reqwest::Response, status: StatusCode, code: &str) {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("errors are JSON");
    assert_eq!(body["error"], code, "{body}");
    assert!(!body["message"].as_str().unwrap().is_empty());
}

/// Bad input gets a clear JSON error and nothing reaches the queue. (The
/// same cases run in-process, with no server, in `app/src/http/tests.rs`;
/// here they go through real HTTP, reqwest's encoders and a real Redis.)
#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let redis = Redis::start();
    let mongo = Mongo::start();
    let server = Multivac::server(&redis, &mongo, &[("MULTIVAC_MAX_DATA_BYTES", "100")]);
    let client = reqwest::Client::new();
    let form = "application/x-www-form-urlencoded";
    let json = "application/json";
    let bad = StatusCode::BAD_REQUEST;
    let large = StatusCode::PAYLOAD_TOO_LARGE;
    // (Content-Type, body, status, code)
    let raw: [(&str, &[u8], StatusCode, &str); 13] = [
        // missing or empty data
        (form, b"other=1", bad, "missing_data"),
        (form, b"data=", bad, "empty_data"),
        (form, b"data=+%20+", bad, "empty_data"),
        (json, b"{}", bad, "missing_data"),
        (json, br#"{"data": ""}"#, bad, "empty_data"),
        (json, br#"{"data": 42}"#, bad, "data_not_string"),
        (json, b"{not json", bad, "malformed_body"),
        (form, b"data=a&data=b", bad, "repeated_data"),
        // invalid UTF-8, in every encoding
        (form, b"data=%FF%FEab", bad, "invalid_utf8"),
        (form, b"data=\xff\xfe", bad, "invalid_utf8"),
        (json, b"{\"data\": \"\xff\"}", bad, "invalid_utf8"),
        // unsupported content type
        (
            "text/plain",
            b"data=hello",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        // over MULTIVAC_MAX_DATA_BYTES (the whole body, before decoding)
        (form, &[b'a'; 1 << 20], large, "data_too_large"),
    ];
    for (content_type, body, status, code) in raw {
        let response = client
            .post(server.url(DATA))
            .header("Content-Type", content_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_error(response, status, code).await;
    }
    // Bodies built by reqwest, as clients build them.
    let binary_part = reqwest::multipart::Form::new().part(
        "data",
        reqwest::multipart::Part::bytes(vec![0xc3, 0x28]).file_name("x.bin"),
    );
    let built = [
        (
            client
                .post(server.url(DATA))
                .multipart(reqwest::multipart::Form::new().text("data", "")),
            bad,
            "empty_data",
        ),
        (
            client.post(server.url(DATA)).multipart(binary_part),
            bad,
            "invalid_utf8",
        ),
        // over MULTIVAC_MAX_DATA_BYTES -> 413 (the limit counts UTF-8 bytes)
        (
            client
                .post(server.url(DATA))
                .form(&[("data", "a".repeat(101))]),
            large,
            "data_too_large",
        ),
        (
            client
                .post(server.url(DATA))
                .form(&[("data", "é".repeat(51))]),
            large,
            "data_too_large",
        ),
        // no content type
        (
            client.post(server.url(DATA)).body("data=hello"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        // unknown routes and methods get JSON too
        (
            client.get(server.url("/nowhere")),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            client.get(server.url(DATA)),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (request, status, code) in built {
        assert_error(request.send().await.unwrap(), status, code).await;
    }
    assert_eq!(
        stream_len(&redis).await,
        0,
        "no bad input may reach the queue"
    );
    // At the limit is fine.
    assert_eq!(
        post_form(&server, &"a".repeat(100)).await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(stream_len(&redis).await, 1);
}

/// With MULTIVAC_API_TOKEN set, POST needs the bearer token; reads stay open.
#[tokio::test(flavor = "multi_thread")]
async fn post_requires_the_bearer_token_when_one_is_set() {
    let redis = Redis::start();
    let mongo = Mongo::start();
    let server = Multivac::server(&redis, &mongo, &[("MULTIVAC_API_TOKEN", "s3cret-token")]);
    let client = reqwest::Client::new();
    let post = |auth: Option<&'static str>| {
        let mut request = client.post(server.url(DATA)).form(&[("data", "hello")]);
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        request.send()
    };
    for auth in [None, Some("Bearer wrong"), Some("Basic czNjcmV0LXRva2Vu")] {
        let refused = post(auth).await.unwrap();
        assert_eq!(refused.headers()["www-authenticate"], "Bearer", "{auth:?}");
        assert_error(refused, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    assert_eq!(stream_len(&redis).await, 0);
    assert_eq!(
        post(Some("Bearer s3cret-token")).await.unwrap().status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(stream_len(&redis).await, 1);
    assert_eq!(
        reqwest::get(server.url("/multivac"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

/// Redis down: 503 with Retry-After, not ready, and nothing half-written:
/// after Redis comes back (from its append-only file) it holds exactly the
/// data that got a 202.
#[tokio::test(flavor = "multi_thread")]
async fn redis_down_gives_503_with_retry_after_and_writes_nothing() {
    let mut redis = Redis::start_persistent();
    let mongo = Mongo::start();
    let server = Multivac::server(&redis, &mongo, &[("MULTIVAC_BACKEND_TIMEOUT_MS", "500")]);
    for datum in ["first", "second"] {
        assert_eq!(
            post_form(&server, datum).await.status(),
            StatusCode::ACCEPTED
        );
    }
    redis.stop();
    // The first POST may go out on the connection that just broke: the
    // server cannot know whether Redis ran it, and says so; once the
    // connection is refused, it knows nothing was queued.
    let (status, first, retry_after) = refusal(post_form(&server, "refused").await).await;
    assert_eq!(
        (status, retry_after.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "1")
    );
    assert!(
        ["queue_unconfirmed", "queue_unavailable"].contains(&first.as_str()),
        "{first}"
    );
    let refused = post_form(&server, "refused").await;
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_error(
        refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "queue_unavailable",
    )
    .await;
    assert_eq!(
        reqwest::get(server.url("/readyz")).await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        reqwest::get(server.url("/healthz")).await.unwrap().status(),
        StatusCode::OK
    );

    redis.restart();
    let mut conn = redis.conn().await;
    let entries: redis::streams::StreamRangeReply = conn.xrange_all("multivac:data").await.unwrap();
    let data: Vec<String> = entries.ids.iter().map(|e| e.get("data").unwrap()).collect();
    assert_eq!(data, vec!["first", "second"]);
    // and the server recovers by itself
    eventually(Duration::from_secs(10), "POST to succeed again", || async {
        (post_form(&server, "third").await.status() == StatusCode::ACCEPTED).then_some(())
    })
    .await;
    assert_eq!(stream_len(&redis).await, 3);
    assert_eq!(
        reqwest::get(server.url("/readyz")).await.unwrap().status(),
        StatusCode::OK
    );
}

/// The seed's "/zzz/ has a bug" was a route that answered only one spelling.
#[tokio::test(flavor = "multi_thread")]
async fn zzz_answers_with_and_without_trailing_slash() {
    let redis = Redis::start();
    let mongo = Mongo::start();
    let server = Multivac::server(&redis, &mongo, &[]);
    for path in ["/zzz", "/zzz/"] {
        let response = reqwest::get(server.url(path)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["state"], "asleep", "GET {path}: {body}");
    }
}

/// The same class of bug, for every other route of the server.
#[tokio::test(flavor = "multi_thread")]
async fn every_server_route_answers_with_and_without_trailing_slash() {
    let redis = Redis::start();
    let mongo = Mongo::start();
    let server = Multivac::server(&redis, &mongo, &[]);
    for path in ["/multivac", "/healthz", "/readyz", "/metrics"] {
        for spelling in [path.to_owned(), format!("{path}/")] {
            let response = reqwest::get(server.url(&spelling)).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "GET {spelling}");
        }
    }
    for spelling in [DATA.to_owned(), format!("{DATA}/")] {
        let response = reqwest::Client::new()
            .post(server.url(&spelling))
            .form(&[("data", "slash")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED, "POST {spelling}");
    }
    assert_eq!(stream_len(&redis).await, 2);
}

/// The metrics count requests by route and status and expose the backlog.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_and_show_the_backlog() {
    let redis = Redis::start();
    let mongo = Mongo::start();
    let server = Multivac::server(&redis, &mongo, &[]);
    for _ in 0..3 {
        assert_eq!(
            post_form(&server, "queued").await.status(),
            StatusCode::ACCEPTED
        );
    }
    assert_eq!(
        post_form(&server, "").await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        server
            .metric(
                r#"multivac_http_requests_total{route="/multivac/data",method="POST",status="202"}"#
            )
            .await,
        3.0
    );
    assert_eq!(
        server
            .metric(
                r#"multivac_http_requests_total{route="/multivac/data",method="POST",status="400"}"#
            )
            .await,
        1.0
    );
    assert_eq!(server.metric("multivac_backlog").await, 3.0);
    let zzz: Value = reqwest::get(server.url("/zzz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(zzz["state"], "learning");
    assert_eq!(zzz["backlog"], 3);
    assert_eq!(answer_json(&server).await["backlog"], 3);
}

/// A Redis URL with a password works end to end, and the password never
/// appears in the logs, not even in the errors of a failed connection.
#[tokio::test(flavor = "multi_thread")]
async fn redis_password_in_the_url_works_and_is_never_logged() {
    let redis = Redis::start_with_password("pw-that-must-not-leak");
    let mongo = Mongo::start();
    let server = Multivac::server(&redis, &mongo, &[("MULTIVAC_STATS_TTL_MS", "0")]);
    let _worker = Multivac::worker(&redis, &mongo, "authed", &[]);
    assert_eq!(
        post_form(&server, "secret handshake").await.status(),
        StatusCode::ACCEPTED
    );
    eventually(
        Duration::from_secs(20),
        "the datum to be learned",
        || async { (answer_json(&server).await["knowledge"]["data_processed"] == 1).then_some(()) },
    )
    .await;

    // A server whose Redis password is wrong and whose MongoDB is not
    // there: it logs its errors, with the credentials redacted.
    let port = common::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_multivac"))
        .arg("server")
        .env_clear()
        .env("RUST_LOG", "debug")
        .env("MULTIVAC_BIND", format!("127.0.0.1:{port}"))
        .env("MULTIVAC_METRICS_BIND", format!("127.0.0.1:{port}"))
        .env(
            "MULTIVAC_REDIS_URL",
            format!("redis://:wrong-pw-must-not-leak@127.0.0.1:{}/0", redis.port),
        )
        .env(
            "MULTIVAC_MONGODB_URI",
            format!(
                "mongodb://user:mongo-pw-must-not-leak@127.0.0.1:{}/?authSource=admin",
                common::free_port()
            ),
        )
        .env("MULTIVAC_BACKEND_TIMEOUT_MS", "300")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    eventually(Duration::from_secs(10), "the server to listen", || async {
        reqwest::get(format!("{url}/healthz"))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let refused = reqwest::Client::new()
        .post(format!("{url}/multivac/data"))
        .form(&[("data", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        reqwest::get(format!("{url}/multivac"))
            .await
            .unwrap()
            .status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let ready = reqwest::get(format!("{url}/readyz")).await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready = ready.text().await.unwrap();
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(
        logs.contains(":***@"),
        "expected redacted URLs in the logs:\n{logs}"
    );
    for text in [&*logs, &*ready] {
        assert!(
            !text.contains("must-not-leak"),
            "a password leaked:\n{text}"
        );
    }
}

/// Reads the `error` code of a JSON error answer, with its Retry-After.
async fn refusal(response: reqwest::Response) -> (StatusCode, String, String) {
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
        retry_after,
    )
}

/// A Redis at its maxmemory (noeviction) refuses XADD: POST answers 503
/// `queue_full` with Retry-After and every 202 before it is in the stream;
/// a worker still reads, acknowledges and deletes entries, which frees
/// memory, and POST is accepted again.
#[tokio::test(flavor = "multi_thread")]
async fn redis_at_maxmemory_gives_503_queue_full_and_workers_still_drain_it() {
    let redis =
        Redis::start_configured(&["--maxmemory", "3mb", "--maxmemory-policy", "noeviction"]);
    let mongo = Mongo::start();
    let server = Multivac::server(&redis, &mongo, &[]);
    let datum = "x".repeat(8 * 1024);
    let mut accepted = 0u64;
    let refused = loop {
        let response = post_form(&server, &datum).await;
        if response.status() != StatusCode::ACCEPTED {
            break refusal(response).await;
        }
        accepted += 1;
        assert!(accepted < 10_000, "Redis never filled up");
    };
    assert_eq!(
        refused,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_full".to_owned(),
            "5".to_owned()
        )
    );
    assert!(accepted > 10, "Redis was full before it took anything");
    assert_eq!(
        stream_len(&redis).await,
        accepted,
        "a 202 is missing from the stream"
    );

    let _worker = Multivac::worker(&redis, &mongo, "drainer", &[("MULTIVAC_BATCH_SIZE", "16")]);
    let store = mongo.store().await;
    eventually(
        Duration::from_secs(60),
        "the full queue to be learned",
        || async {
            let knowledge = store.knowledge().await.ok()?;
            (knowledge.data_processed == accepted).then_some(())
        },
    )
    .await;
    assert_eq!(
        stream_len(&redis).await,
        0,
        "acknowledged entries were not deleted"
    );
    assert_eq!(redis.queue().dead_letters().await.unwrap(), 0);
    assert_eq!(
        post_form(&server, &datum).await.status(),
        StatusCode::ACCEPTED
    );
}

/// A read-only Redis (a replica) and one that cannot persist (MISCONF) give
/// 503 `queue_unavailable` with the reason; nothing is queued.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_or_unpersisting_redis_gives_503_with_the_reason() {
    let mongo = Mongo::start();
    let closed = common::free_port().to_string();
    let replica = Redis::start_configured(&["--replicaof", "127.0.0.1", &closed]);
    let server = Multivac::server(&replica, &mongo, &[]);
    let response = post_form(&server, "to a replica").await;
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "queue_unavailable", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("read-only"),
        "{body}"
    );

    // RDB snapshots that fail (here: the data directory is gone) make Redis
    // refuse every write with MISCONF.
    let broken = Redis::start_configured(&["--save", "3600 1"]);
    let server = Multivac::server(&broken, &mongo, &[]);
    assert_eq!(
        post_form(&server, "before").await.status(),
        StatusCode::ACCEPTED
    );
    std::fs::remove_dir_all(broken.dir()).unwrap();
    let mut conn = broken.conn().await;
    let _: String = redis::cmd("BGSAVE").query_async(&mut conn).await.unwrap();
    // Until the snapshot has failed, POST is still accepted.
    let mut accepted = 1;
    let started = std::time::Instant::now();
    let body: Value = loop {
        let response = post_form(&server, "after").await;
        if response.status() == StatusCode::ACCEPTED {
            accepted += 1;
            assert!(started.elapsed() < Duration::from_secs(10), "no MISCONF");
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        break response.json().await.unwrap();
    };
    assert_eq!(body["error"], "queue_unavailable", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("cannot persist"),
        "{body}"
    );
    assert_eq!(
        stream_len(&broken).await,
        accepted,
        "the refused datum was queued"
    );
}

/// MULTIVAC_MAX_BACKLOG bounds the backlog exactly with one server: POST
/// answers 503 `backlog_full` at the bound and takes data again once a
/// worker drains it.
#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_at_max_backlog_gives_503_backlog_full_until_drained() {
    let redis = Redis::start();
    let mongo = Mongo::start();
    let server = Multivac::server(&redis, &mongo, &[("MULTIVAC_MAX_BACKLOG", "20")]);
    // Before its first reading (within 200 ms of the start) the bound lets
    // everything through.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut accepted = 0;
    let (status, code, retry_after) = loop {
        let response = post_form(&server, "bounded").await;
        if response.status() != StatusCode::ACCEPTED {
            break refusal(response).await;
        }
        accepted += 1;
        assert!(accepted <= 20, "accepted {accepted} past a bound of 20");
    };
    assert_eq!(accepted, 20);
    assert_eq!(
        (status, code.as_str(), retry_after.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "backlog_full", "5")
    );
    assert_eq!(stream_len(&redis).await, 20);

    let _worker = Multivac::worker(&redis, &mongo, "drainer", &[]);
    eventually(
        Duration::from_secs(30),
        "POST to be accepted again",
        || async {
            (post_form(&server, "room again").await.status() == StatusCode::ACCEPTED).then_some(())
        },
    )
    .await;
}

/// An eviction policy that may delete the stream is reported (log and
/// metric) and does not stop the server; neither does a Redis whose CONFIG
/// command is disabled.
#[tokio::test(flavor = "multi_thread")]
async fn a_dangerous_or_unreadable_eviction_policy_is_reported_not_fatal() {
    let mongo = Mongo::start();
    // (redis-server arguments, the policy label reported)
    let table: [(&[&str], &str); 3] = [
        (&["--maxmemory-policy", "noeviction"], "noeviction"),
        (&["--maxmemory-policy", "allkeys-lru"], "allkeys-lru"),
        (&["--rename-command", "CONFIG", ""], "unknown"),
    ];
    for (args, policy) in table {
        let redis = Redis::start_configured(args);
        let server = Multivac::server(&redis, &mongo, &[]);
        let line = format!(r#"multivac_redis_maxmemory_policy{{policy="{policy}"}}"#);
        eventually(Duration::from_secs(10), &line, || async {
            (server.metric(&line).await == 1.0).then_some(())
        })
        .await;
        assert_eq!(
            post_form(&server, "still served").await.status(),
            StatusCode::ACCEPTED,
            "{args:?}"
        );
    }
}

/// On SIGTERM with a drain period the server answers /readyz 503
/// `draining` and keeps accepting data (each answer closing its connection)
/// until the period ends, then exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_then_exits() {
    let redis = Redis::start();
    let mongo = Mongo::start();
    let mut server = Multivac::server(&redis, &mongo, &[("MULTIVAC_DRAIN_MS", "1500")]);
    let pid = server.pid().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let started = std::time::Instant::now();
    let ready = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["shutdown"], "draining", "{ready}");
    let mut accepted = 0;
    while started.elapsed() < Duration::from_millis(1200) {
        let response = post_form(&server, "during the drain").await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(response.headers()["connection"], "close");
        accepted += 1;
    }
    let status = server.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "exited before the drain ended"
    );
    assert_eq!(stream_len(&redis).await, accepted);
}
