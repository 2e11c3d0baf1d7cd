//! TLS to the stores, against the real servers: Debian's redis-server with
//! only a TLS port and FerretDB with only its TLS listener, both on a
//! certificate signed by a CA the test makes. The server and a worker carry
//! data end to end over TLS; without the right CA nothing connects.

mod common;

use std::time::Duration;

use common::eventually;
use common::tls::{Pki, TlsRedis, server, tls_mongo, worker};
use reqwest::StatusCode;
use serde_json::Value;

const PASSWORD: &str = "tls-test-password";

async fn readyz(server: &common::Multivac) -> (StatusCode, Value) {
    let response = reqwest::get(server.url("/readyz")).await.unwrap();
    (response.status(), response.json().await.unwrap())
}

/// `rediss://` with the CA in MULTIVAC_REDIS_CA_FILE for both processes;
/// MongoDB over TLS through the URI (`tls=true&tlsCAFile=`) for the server
/// and through MULTIVAC_MONGODB_CA_FILE for the worker: data posted to the
/// server is learned by the worker and counted by the server.
#[tokio::test(flavor = "multi_thread")]
async fn data_flows_over_tls_to_redis_and_mongodb_with_a_private_ca() {
    let pki = Pki::new();
    let redis = TlsRedis::start(&pki, PASSWORD);
    let mongo = tls_mongo(&pki);
    let ca = pki.ca();
    let ca = ca.to_str().unwrap();
    let uri_with_ca = format!("{}?tls=true&tlsCAFile={ca}", mongo.uri());
    let server = server(
        &redis.url(),
        &mongo,
        &[
            ("MULTIVAC_REDIS_CA_FILE", ca),
            ("MULTIVAC_MONGODB_URI", &uri_with_ca),
            ("MULTIVAC_REQUIRED_CONCEPTS", "3"),
            ("MULTIVAC_STATS_TTL_MS", "0"),
        ],
    );
    let _worker = worker(
        &redis.url(),
        &mongo,
        "tls-worker",
        &[
            ("MULTIVAC_REDIS_CA_FILE", ca),
            ("MULTIVAC_MONGODB_CA_FILE", ca),
        ],
    );
    let (status, body) = eventually(
        Duration::from_secs(30),
        "the server ready over TLS",
        || async {
            let (status, body) = readyz(&server).await;
            (status == StatusCode::OK).then_some((status, body))
        },
    )
    .await;
    assert_eq!(
        (status, &body["redis"], &body["mongodb"]),
        (StatusCode::OK, &Value::from("ok"), &Value::from("ok"))
    );
    let client = reqwest::Client::new();
    for datum in ["entropy over tls", "stars burn out", "light returns"] {
        let response = client
            .post(server.url("/multivac/data"))
            .form(&[("data", datum)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED, "{datum}");
    }
    let zzz: Value = eventually(
        Duration::from_secs(30),
        "the worker to learn the 3 data",
        || async {
            let zzz: Value = reqwest::get(server.url("/zzz"))
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (zzz["data_processed"] == 3 && zzz["backlog"] == 0).then_some(zzz)
        },
    )
    .await;
    assert_eq!(zzz["state"], "enlightened", "{zzz}");
    assert_eq!(zzz["workers"][0]["consumer"], "tls-worker");
    let answer = reqwest::get(server.url("/multivac"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(answer, "LET THERE BE LIGHT!");
}

/// Fails closed: a `rediss://` Redis whose certificate neither the public
/// roots nor the given CA vouch for, the TLS port spoken to without TLS, and
/// a MongoDB checked against the wrong CA are all unreachable (readiness
/// says which), and nothing is accepted.
#[tokio::test(flavor = "multi_thread")]
async fn without_the_right_ca_nothing_connects() {
    let pki = Pki::new();
    let redis = TlsRedis::start(&pki, PASSWORD);
    let mongo = tls_mongo(&pki);
    let stranger = pki.stranger_ca();
    let stranger = stranger.to_str().unwrap();
    let wrong_mongo = format!("{}?tls=true&tlsCAFile={stranger}", mongo.uri());
    for (what, url, env) in [
        ("the public roots", redis.url(), vec![]),
        (
            "another CA",
            redis.url(),
            vec![("MULTIVAC_REDIS_CA_FILE", stranger)],
        ),
        ("no TLS", redis.plain_url(), vec![]),
    ] {
        let mut env = env.clone();
        env.push(("MULTIVAC_MONGODB_URI", wrong_mongo.as_str()));
        env.push(("MULTIVAC_BACKEND_TIMEOUT_MS", "1000"));
        let server = server(&url, &mongo, &env);
        let (status, body) = readyz(&server).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{what}: {body}");
        assert_ne!(body["redis"], "ok", "{what}: {body}");
        assert_ne!(body["mongodb"], "ok", "{what}: {body}");
        assert!(!body.to_string().contains(PASSWORD), "{body}");
        let response = reqwest::Client::new()
            .post(server.url("/multivac/data"))
            .form(&[("data", "must not be accepted")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
    }
}
