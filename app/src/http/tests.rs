//! The server's routes in-process (`tower::ServiceExt::oneshot`, as in axum's
//! testing example), with the clients built from the command line exactly as
//! `multivac server` builds them, and no Redis or MongoDB running: MongoDB is
//! a closed port, and Redis is a socket that accepts connections and never
//! answers, so a test can tell whether the server tried to reach the queue
//! (or, for the refusals Redis gives when full, read-only, loading or unable
//! to persist, a socket that answers every command with that error; the
//! integration tests get the same errors from a real redis-server).

use std::net::TcpListener;
use std::time::Duration;

use axum::http::Request;
use clap::Parser;
use multivac_contract::http_service;
use serde_json::Value;
use tower::ServiceExt;
use tower_http::normalize_path::NormalizePath;

use super::*;
use crate::Cli;
use crate::config::Command;

/// The server under test, and the socket standing in for Redis.
struct Server {
    service: NormalizePath<Router>,
    redis: TcpListener,
    state: Arc<AppState>,
    stop: multivac_contract::ShutdownTrigger,
}

/// One answer, read whole.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("a UTF-8 body")
    }

    /// Asserts an API error: the status, the stable code and a message.
    fn assert_error(&self, status: StatusCode, code: &str, what: &str) {
        assert_eq!(self.status, status, "{what}: {}", self.text());
        let body = self.json();
        assert_eq!(body["error"], code, "{what}: {body}");
        assert!(
            !body["message"].as_str().unwrap_or_default().is_empty(),
            "{what}: {body}"
        );
    }
}

impl Server {
    /// `multivac server ARGS...` against the stand-ins, by default with
    /// 300 ms backend timeouts so that every backend call fails fast.
    async fn start(args: &[&str]) -> Server {
        Self::start_exposed(args, |_| Exposed::ALL).await
    }

    /// [`Server::start`], serving what `exposed` picks for the parsed arguments.
    async fn start_exposed(args: &[&str], exposed: impl Fn(&ServerArgs) -> Exposed) -> Server {
        let (args, redis) = server_args(args);
        let (stop, shutdown) = multivac_contract::shutdown_channel();
        let state = Arc::new(AppState::connect(&args, shutdown).await.unwrap());
        let exposed = exposed(&args);
        Server {
            service: http_service(routes(state.clone(), exposed)),
            redis,
            state,
            stop,
        }
    }

    /// Another listener of the same server (same state, limit and drain),
    /// serving what `exposed` picks.
    fn listener(&self, exposed: Exposed) -> NormalizePath<Router> {
        http_service(routes(self.state.clone(), exposed))
    }

    /// Like [`Server::start`], with a Redis stand-in that answers every
    /// command with the error `reply` (a RESP error line such as `-OOM ...`).
    async fn start_refusing(reply: &'static str, args: &[&str]) -> Server {
        let server = Server::start(args).await;
        let listener =
            tokio::net::TcpListener::from_std(server.redis.try_clone().unwrap()).unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut pending = Vec::new();
                    let mut buf = vec![0; 64 * 1024];
                    while let Ok(n) = conn.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        pending.extend_from_slice(&buf[..n]);
                        let (commands, used) = resp_commands(&pending);
                        pending.drain(..used);
                        let answer = format!("{reply}\r\n").repeat(commands);
                        if conn.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        server
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        send(&self.service, request).await
    }

    async fn get(&self, uri: &str) -> Answer {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    async fn post(&self, uri: &str, content_type: Option<&str>, body: Vec<u8>) -> Answer {
        let mut request = Request::post(uri);
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        self.send(request.body(Body::from(body)).unwrap()).await
    }

    /// True once anything connected to the Redis stand-in: a datum can only
    /// be queued over a connection, so false means nothing was queued.
    fn redis_contacted(&self) -> bool {
        self.redis.accept().is_ok()
    }

    /// A counter or gauge line's value (0 when absent), read from the
    /// registry /metrics encodes: GET /metrics would wait for the silent
    /// Redis to read the backlog.
    fn metric(&self, name: &str) -> f64 {
        encode_metrics(&self.state.metrics.registry)
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }
}

/// `multivac server ARGS...` parsed, against the stand-ins (see
/// [`Server::start`]), and the socket standing in for Redis.
fn server_args(args: &[&str]) -> (ServerArgs, TcpListener) {
    let redis = TcpListener::bind("127.0.0.1:0").expect("binding the Redis stand-in");
    redis.set_nonblocking(true).unwrap();
    let redis_url = format!("redis://127.0.0.1:{}", redis.local_addr().unwrap().port());
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mongodb_uri = format!("mongodb://{closed}/?directConnection=true");
    let defaults = [
        ("--redis-url", redis_url.as_str()),
        ("--mongodb-uri", mongodb_uri.as_str()),
        ("--backend-timeout-ms", "300"),
        ("--stats-ttl-ms", "0"),
    ];
    let mut argv = vec!["multivac", "server"];
    argv.extend_from_slice(args);
    for (flag, value) in defaults {
        if !args.contains(&flag) {
            argv.extend([flag, value]);
        }
    }
    let Command::Server(args) = Cli::try_parse_from(argv).unwrap().command else {
        panic!("not the server command")
    };
    (args, redis)
}

/// `request` to `service`, the answer read whole.
async fn send(service: &NormalizePath<Router>, request: Request<Body>) -> Answer {
    let response = service.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

/// The complete RESP commands (arrays of bulk strings) at the start of
/// `buf`: how many, and how many bytes they take.
fn resp_commands(buf: &[u8]) -> (usize, usize) {
    fn line(buf: &[u8], at: usize) -> Option<(usize, usize)> {
        let end = at + buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
        let n = std::str::from_utf8(&buf[at + 1..end]).ok()?.parse().ok()?;
        Some((n, end + 2))
    }
    let (mut count, mut used) = (0, 0);
    'commands: while let Some((parts, mut at)) = line(buf, used) {
        for _ in 0..parts {
            let Some((len, start)) = line(buf, at) else {
                break 'commands;
            };
            at = start + len + 2;
            if at > buf.len() {
                break 'commands;
            }
        }
        count += 1;
        used = at;
    }
    (count, used)
}

const FORM: &str = "application/x-www-form-urlencoded";
const BOUNDARY: &str = "multivac-test-boundary";

/// A POST body and its Content-Type (none when `None`).
type Payload = (Option<String>, Vec<u8>);

fn with_type(content_type: &str, body: impl AsRef<[u8]>) -> Payload {
    (Some(content_type.to_owned()), body.as_ref().to_vec())
}

fn form(body: impl AsRef<[u8]>) -> Payload {
    with_type(FORM, body)
}

fn json(body: impl AsRef<[u8]>) -> Payload {
    with_type("application/json", body)
}

/// A multipart/form-data body of `(name, file name, content)` parts.
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Payload {
    let mut body = Vec::new();
    for (name, file_name, content) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let file = file_name
            .map(|f| format!("; filename=\"{f}\""))
            .unwrap_or_default();
        body.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{name}\"{file}\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    multipart_raw(body)
}

fn multipart_raw(body: impl AsRef<[u8]>) -> Payload {
    with_type(&format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

/// Every way a POST body can be wrong gets its status and error code, and
/// none of them reaches Redis.
#[tokio::test]
async fn bad_input_gets_a_clear_error_and_never_reaches_the_queue() {
    let server = Server::start(&["--max-data-bytes", "100"]).await;
    let bad = StatusCode::BAD_REQUEST;
    let large = StatusCode::PAYLOAD_TOO_LARGE;
    let unsupported = StatusCode::UNSUPPORTED_MEDIA_TYPE;
    let cut_off =
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\nhal");
    #[rustfmt::skip]
    let table: [(Payload, StatusCode, &str); 24] = [
        // missing, empty, repeated
        (form("other=1"), bad, "missing_data"),
        (form("data="), bad, "empty_data"),
        (form("data=+%20+"), bad, "empty_data"),
        (form("data=a&data=b"), bad, "repeated_data"),
        (json("{}"), bad, "missing_data"),
        (json(r#"{"data": null}"#), bad, "missing_data"),
        (json(r#"{"data": ""}"#), bad, "empty_data"),
        (multipart(&[("data", None, b"")]), bad, "empty_data"),
        (multipart(&[("other", None, b"x")]), bad, "missing_data"),
        (multipart(&[("data", None, b"a"), ("data", None, b"b")]), bad, "repeated_data"),
        // not a string, not UTF-8, malformed
        (json(r#"{"data": 42}"#), bad, "data_not_string"),
        (form("data=%FF%FEab"), bad, "invalid_utf8"),
        (form(b"data=\xff\xfe"), bad, "invalid_utf8"),
        (json(b"{\"data\": \"\xff\"}"), bad, "invalid_utf8"),
        (multipart(&[("data", Some("x.bin"), &[0xc3, 0x28])]), bad, "invalid_utf8"),
        (json("{not json"), bad, "malformed_body"),
        (json(r#"["data"]"#), bad, "malformed_body"),
        (multipart_raw(cut_off), bad, "malformed_body"),
        (with_type("multipart/form-data", "data"), bad, "malformed_body"),
        // over MULTIVAC_MAX_DATA_BYTES (100 UTF-8 bytes), or a huge body
        (form(format!("data={}", "a".repeat(101))), large, "data_too_large"),
        (form(format!("data={}", "%C3%A9".repeat(51))), large, "data_too_large"),
        (form(vec![b'a'; 1 << 20]), large, "data_too_large"),
        // not a body type the server reads
        (with_type("text/plain", "data=hello"), unsupported, "unsupported_media_type"),
        ((None, b"data=hello".to_vec()), unsupported, "unsupported_media_type"),
    ];
    for ((content_type, body), status, code) in table {
        let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        let what = format!("{content_type:?} {shown:?}");
        server
            .post(path::DATA, content_type.as_deref(), body)
            .await
            .assert_error(status, code, &what);
    }
    assert!(
        !server.redis_contacted(),
        "bad input made the server connect to Redis"
    );

    // At the limit (100 bytes, counted in UTF-8) is accepted: it goes on to
    // the queue, which does not answer here (so the server cannot say
    // whether the datum was queued).
    for (what, body) in [
        ("100 ASCII bytes", format!("data={}", "a".repeat(100))),
        (
            "50 two-byte characters",
            format!("data={}", "%C3%A9".repeat(50)),
        ),
    ] {
        server
            .post(path::DATA, Some(FORM), body.into_bytes())
            .await
            .assert_error(StatusCode::SERVICE_UNAVAILABLE, "queue_unconfirmed", what);
    }
    assert!(server.redis_contacted());
}

/// With MULTIVAC_API_TOKEN set, POST needs exactly that bearer token, and a
/// refusal never reaches Redis; reads stay open.
#[tokio::test]
async fn post_requires_the_bearer_token_when_one_is_set() {
    let server = Server::start(&["--api-token", "s3cret-token"]).await;
    let post = |authorization: Option<&'static str>| {
        let mut request = Request::post(path::DATA).header(header::CONTENT_TYPE, FORM);
        if let Some(authorization) = authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        server.send(request.body(Body::from("data=hello")).unwrap())
    };
    for authorization in [
        None,
        Some("Bearer wrong"),
        Some("Basic czNjcmV0LXRva2Vu"),
        Some("Bearer s3cret-token-and-more"),
        Some("s3cret-token"),
    ] {
        let refused = post(authorization).await;
        let what = format!("Authorization: {authorization:?}");
        refused.assert_error(StatusCode::UNAUTHORIZED, "unauthorized", &what);
        assert_eq!(
            refused.headers[header::WWW_AUTHENTICATE],
            "Bearer",
            "{what}"
        );
    }
    assert!(!server.redis_contacted(), "a refused POST reached Redis");
    // The right token gets past the check, to the (silent) queue.
    for authorization in ["Bearer s3cret-token", "bearer s3cret-token"] {
        post(Some(authorization)).await.assert_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_unconfirmed",
            authorization,
        );
    }
    assert!(server.redis_contacted());
    assert_ne!(
        server.get(path::WELCOME).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// Unknown routes and methods get a JSON error too.
#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let server = Server::start(&[]).await;
    for uri in ["/nowhere", "/nowhere/", "/multivac/data/more", "/zzzz"] {
        server
            .get(uri)
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found", uri);
    }
    for (method, uri) in [
        (Method::GET, path::DATA),
        (Method::PUT, path::DATA),
        (Method::POST, path::QUESTION),
        (Method::DELETE, path::ZZZ),
        (Method::POST, path::HEALTHZ),
    ] {
        let what = format!("{method} {uri}");
        server
            .send(
                Request::builder()
                    .method(method)
                    .uri(uri)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", &what);
    }
    assert!(!server.redis_contacted());
}

/// Every route answers the same with and without a trailing slash (the
/// seed's "/zzz/ has a bug"), here with the backends down.
#[tokio::test]
async fn every_route_answers_the_same_with_and_without_a_trailing_slash() {
    let server = Server::start(&[]).await;
    // (method, path, status with the backends down, error code if any)
    #[rustfmt::skip]
    let routes = [
        (Method::GET, path::WELCOME, StatusCode::OK, None),
        (Method::GET, path::QUESTION, StatusCode::SERVICE_UNAVAILABLE, Some("store_unavailable")),
        (Method::POST, path::DATA, StatusCode::BAD_REQUEST, Some("empty_data")),
        (Method::GET, path::ZZZ, StatusCode::SERVICE_UNAVAILABLE, Some("queue_unavailable")),
        (Method::GET, path::HEALTHZ, StatusCode::OK, None),
        (Method::GET, path::READYZ, StatusCode::SERVICE_UNAVAILABLE, None),
        (Method::GET, path::METRICS, StatusCode::OK, None),
    ];
    for (method, route, status, code) in routes {
        for spelling in [route.to_owned(), format!("{route}/")] {
            let what = format!("{method} {spelling}");
            let request = Request::builder()
                .method(method.clone())
                .uri(&spelling)
                .header(header::CONTENT_TYPE, FORM)
                .body(Body::from("data="))
                .unwrap();
            let answer = server.send(request).await;
            match code {
                Some(code) => answer.assert_error(status, code, &what),
                None => assert_eq!(answer.status, status, "{what}"),
            }
        }
    }
}

/// The public port has the API and the probes; `/metrics` and `/zzz` are on
/// the internal port, and on the public one a 404 says where they are,
/// until `--public-zzz` puts `/zzz` there too (never `/metrics`).
#[tokio::test]
async fn metrics_and_zzz_stay_off_the_public_port_unless_asked() {
    let public = Server::start_exposed(&[], |a| Exposed::public(a.public_zzz)).await;
    let internal = Server::start_exposed(&[], |_| Exposed::INTERNAL).await;
    let asked = Server::start_exposed(&["--public-zzz"], |a| Exposed::public(a.public_zzz)).await;
    // (path, public, internal, public with --public-zzz); the backends are
    // down, so /zzz answers 503 where it is served and /readyz 503 everywhere.
    #[rustfmt::skip]
    let table = [
        (path::WELCOME, StatusCode::OK, StatusCode::NOT_FOUND, StatusCode::OK),
        (path::QUESTION, StatusCode::SERVICE_UNAVAILABLE, StatusCode::NOT_FOUND, StatusCode::SERVICE_UNAVAILABLE),
        (path::ZZZ, StatusCode::NOT_FOUND, StatusCode::SERVICE_UNAVAILABLE, StatusCode::SERVICE_UNAVAILABLE),
        (path::METRICS, StatusCode::NOT_FOUND, StatusCode::OK, StatusCode::NOT_FOUND),
        (path::HEALTHZ, StatusCode::OK, StatusCode::OK, StatusCode::OK),
        (path::READYZ, StatusCode::SERVICE_UNAVAILABLE, StatusCode::SERVICE_UNAVAILABLE, StatusCode::SERVICE_UNAVAILABLE),
    ];
    for (route, on_public, on_internal, on_asked) in table {
        for spelling in [route.to_owned(), format!("{route}/")] {
            assert_eq!(
                public.get(&spelling).await.status,
                on_public,
                "public {spelling}"
            );
            assert_eq!(
                internal.get(&spelling).await.status,
                on_internal,
                "internal {spelling}"
            );
            assert_eq!(
                asked.get(&spelling).await.status,
                on_asked,
                "--public-zzz {spelling}"
            );
        }
    }
    let zzz = public.get("/zzz/").await;
    zzz.assert_error(StatusCode::NOT_FOUND, "internal_only", "public /zzz/");
    let message = zzz.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("MULTIVAC_METRICS_BIND") && message.contains("MULTIVAC_PUBLIC_ZZZ=true"),
        "{message}"
    );
    let metrics = public.get(path::METRICS).await;
    metrics.assert_error(StatusCode::NOT_FOUND, "internal_only", "public /metrics");
    assert!(
        !metrics.json()["message"]
            .as_str()
            .unwrap()
            .contains("PUBLIC_ZZZ")
    );
    internal
        .send(
            Request::post(path::DATA)
                .body(Body::from("data=x"))
                .unwrap(),
        )
        .await
        .assert_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "POST on the internal port",
        );
}

/// With Redis and MongoDB down: liveness holds, readiness is 503 for Redis
/// (it gates) and reports MongoDB (it does not), without naming either's
/// host, and the answers that need a backend are 503 with Retry-After.
#[tokio::test]
async fn backends_down_give_503_with_retry_after_and_readyz_says_which() {
    let server = Server::start(&[]).await;
    let health = server.get(path::HEALTHZ).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json(), serde_json::json!({"status": "alive"}));

    // The first question waits for MongoDB once (300 ms here).
    let answer = server.get(path::QUESTION).await;
    answer.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "GET /multivac",
    );
    assert_eq!(answer.headers[header::RETRY_AFTER], "1");

    let ready = server.get(path::READYZ).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!ready.text().contains("127.0.0.1"), "{}", ready.text());
    assert_eq!(
        ready.json(),
        serde_json::json!({"status": "unready", "redis": "unavailable", "mongodb": "unavailable"})
    );

    let zzz = server.get(path::ZZZ).await;
    zzz.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "queue_unavailable",
        "GET /zzz",
    );
    assert_eq!(zzz.headers[header::RETRY_AFTER], "1");
    // The plain answer needs MongoDB too.
    let plain = server
        .send(
            Request::get(path::QUESTION)
                .header(header::ACCEPT, "text/plain")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    plain.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "plain",
    );
}

/// Once MongoDB failed to answer, the question is answered without waiting
/// for it again (one read retries in the background), even with a long
/// backend timeout.
#[tokio::test]
async fn the_question_does_not_wait_for_a_mongodb_known_to_be_down() {
    let server = Server::start(&["--backend-timeout-ms", "1500"]).await;
    server.get(path::QUESTION).await.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "first",
    );
    for attempt in 0..5 {
        let started = std::time::Instant::now();
        let answer = server.get(path::QUESTION).await;
        answer.assert_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "again",
        );
        assert!(
            started.elapsed() < Duration::from_millis(750),
            "attempt {attempt} waited {:?} for a MongoDB known to be down",
            started.elapsed()
        );
    }
}

/// What Redis answers when it cannot take a datum becomes a 503 with a
/// Retry-After and a message that says why; nothing is accepted.
#[tokio::test]
async fn redis_refusals_give_503_with_retry_after_and_the_reason() {
    // (Redis' error, error code, Retry-After, words of the message)
    #[rustfmt::skip]
    let table = [
        ("-OOM command not allowed when used memory > 'maxmemory'.", "queue_full", "5", "maxmemory"),
        ("-LOADING Redis is loading the dataset in memory", "queue_unavailable", "1", "loading"),
        ("-READONLY You can't write against a read only replica.", "queue_unavailable", "1", "read-only"),
        ("-MISCONF Errors writing to the AOF file: No space left on device", "queue_unavailable", "1", "cannot persist"),
        ("-ERR something else", "queue_unavailable", "1", "unavailable"),
    ];
    for (reply, code, retry_after, words) in table {
        let server = Server::start_refusing(reply, &["--backend-timeout-ms", "2000"]).await;
        let answer = server
            .post(path::DATA, Some(FORM), b"data=refused".to_vec())
            .await;
        answer.assert_error(StatusCode::SERVICE_UNAVAILABLE, code, reply);
        assert_eq!(answer.headers[header::RETRY_AFTER], retry_after, "{reply}");
        let message = answer.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(words), "{reply}: {message}");
        assert!(
            message.contains("nothing was accepted"),
            "{reply}: {message}"
        );
        let line = format!(r#"multivac_http_errors_total{{error="{code}"}}"#);
        assert_eq!(server.metric(&line), 1.0, "{reply}");
    }
}

/// A Redis that closes the connection on the command: the XADD may have
/// run, so the answer says so (503 `queue_unconfirmed`) instead of claiming
/// that nothing was accepted; a Redis that refuses the connection did not
/// run it (503 `queue_unavailable`).
#[tokio::test]
async fn a_broken_connection_is_unconfirmed_and_a_refused_one_unavailable() {
    let server = Server::start(&["--backend-timeout-ms", "2000"]).await;
    let listener = tokio::net::TcpListener::from_std(server.redis.try_clone().unwrap()).unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        while let Ok((mut conn, _)) = listener.accept().await {
            // Read the first bytes, then hang up without answering.
            let mut buf = [0; 1024];
            let _ = conn.read(&mut buf).await;
        }
    });
    let answer = server
        .post(path::DATA, Some(FORM), b"data=maybe".to_vec())
        .await;
    answer.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "queue_unconfirmed",
        "broken",
    );
    assert_eq!(answer.headers[header::RETRY_AFTER], "1");
    assert!(
        answer.json()["message"]
            .as_str()
            .unwrap()
            .contains("may have been accepted"),
        "{}",
        answer.text()
    );

    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let redis_url = format!("redis://{closed}");
    let refused = Server::start(&["--redis-url", &redis_url]).await;
    refused
        .post(path::DATA, Some(FORM), b"data=never".to_vec())
        .await
        .assert_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_unavailable",
            "refused",
        );
}

/// Past MULTIVAC_MAX_BACKLOG a POST is refused before it reaches Redis, with
/// a JSON reason and Retry-After; below it the POST goes on to the queue.
#[tokio::test]
async fn a_full_backlog_refuses_post_before_redis() {
    let server = Server::start(&["--max-backlog", "10"]).await;
    let reading = |undelivered, pending| Backlog {
        undelivered,
        pending,
    };
    server.state.backlog.record(reading(6, 4), 0);
    let refused = server
        .post(path::DATA, Some(FORM), b"data=one+too+many".to_vec())
        .await;
    refused.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "backlog_full",
        "at the bound",
    );
    assert_eq!(refused.headers[header::RETRY_AFTER], "5");
    let message = refused.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("MULTIVAC_MAX_BACKLOG"), "{message}");
    assert!(!server.redis_contacted(), "a refused POST reached Redis");

    server.state.backlog.record(reading(9, 0), 0);
    server
        .post(path::DATA, Some(FORM), b"data=fits".to_vec())
        .await
        .assert_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_unconfirmed",
            "below the bound",
        );
    assert!(server.redis_contacted());
}

/// Over MULTIVAC_MAX_IN_FLIGHT a request is refused at once (503 overloaded,
/// Retry-After) instead of waiting; the probes still answer.
#[tokio::test]
async fn requests_over_the_in_flight_limit_are_shed_at_once() {
    let server =
        Arc::new(Server::start(&["--max-in-flight", "1", "--backend-timeout-ms", "1000"]).await);
    // One POST holds the only slot: the silent Redis keeps it waiting.
    let holder = {
        let server = server.clone();
        tokio::spawn(async move {
            server
                .post(path::DATA, Some(FORM), b"data=slow".to_vec())
                .await
        })
    };
    while !server.redis_contacted() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = std::time::Instant::now();
    let shed = server.get(path::WELCOME).await;
    shed.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "second request",
    );
    assert_eq!(shed.headers[header::RETRY_AFTER], "1");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the shed request waited {:?}",
        started.elapsed()
    );
    assert_eq!(server.get(path::HEALTHZ).await.status, StatusCode::OK);
    assert_eq!(
        server.metric(r#"multivac_http_errors_total{error="overloaded"}"#),
        1.0
    );
    // The slot comes back once the first request is answered.
    holder.await.unwrap().assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "queue_unconfirmed",
        "holder",
    );
    assert_eq!(server.get(path::WELCOME).await.status, StatusCode::OK);
}

/// After a stop request the server is unready (`draining`) and still serves.
#[tokio::test]
async fn a_stop_request_turns_readyz_to_draining_and_keeps_serving() {
    let server = Server::start(&[]).await;
    server.stop.trigger();
    let ready = server.get(path::READYZ).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["shutdown"], "draining", "{}", ready.text());
    assert_eq!(server.get(path::WELCOME).await.status, StatusCode::OK);
}

/// The public and the internal listener of one server share its in-flight
/// limit and its drain: while a POST on the public port holds the only
/// slot, the public API and /zzz on the internal port are shed, the probes
/// and /metrics on either port are not; a stop request makes /readyz say
/// `draining` on both ports.
#[tokio::test]
async fn both_ports_share_the_in_flight_limit_and_the_drain() {
    let public = Arc::new(
        Server::start_exposed(
            &["--max-in-flight", "1", "--backend-timeout-ms", "2000"],
            |a| Exposed::public(a.public_zzz),
        )
        .await,
    );
    let internal = public.listener(Exposed::INTERNAL);
    let holder = {
        let public = public.clone();
        tokio::spawn(async move {
            public
                .post(path::DATA, Some(FORM), b"data=slow".to_vec())
                .await
        })
    };
    while !public.redis_contacted() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // All sent while the slot is held (the silent Redis holds it 2 s); a
    // shed request is answered at once, the others wait for Redis.
    let (welcome, zzz, metrics, health_internal, health_public, ready_internal) = tokio::join!(
        public.get(path::WELCOME),
        send(&internal, get(path::ZZZ)),
        send(&internal, get(path::METRICS)),
        send(&internal, get(path::HEALTHZ)),
        public.get(path::HEALTHZ),
        send(&internal, get(path::READYZ)),
    );
    assert!(
        !holder.is_finished(),
        "the slot was free during the requests"
    );
    welcome.assert_error(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "public /");
    zzz.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "internal /zzz",
    );
    assert_eq!(metrics.status, StatusCode::OK, "internal /metrics");
    assert_eq!(health_internal.status, StatusCode::OK, "internal /healthz");
    assert_eq!(health_public.status, StatusCode::OK, "public /healthz");
    // Unready for Redis (silent), not shed.
    assert_eq!(ready_internal.json()["redis"], "unavailable");
    holder.await.unwrap();

    public.stop.trigger();
    let (ready_public, ready_internal) =
        tokio::join!(public.get(path::READYZ), send(&internal, get(path::READYZ)));
    for (port, ready) in [("public", ready_public), ("internal", ready_internal)] {
        assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{port}");
        assert_eq!(
            ready.json()["shutdown"],
            "draining",
            "{port}: {}",
            ready.text()
        );
    }
}

/// `multivac server` on two ports, stopped: /readyz says `draining` on both
/// while both still serve (asking clients to close their connections), and
/// both stop listening once the drain is over.
#[tokio::test]
async fn a_stop_drains_both_ports_then_closes_them() {
    let free = || {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (public, internal) = (free(), free());
    let (public_arg, internal_arg) = (public.to_string(), internal.to_string());
    let (args, _redis) = server_args(&[
        "--bind",
        &public_arg,
        "--metrics-bind",
        &internal_arg,
        "--drain-ms",
        "1500",
    ]);
    let (stop, shutdown) = multivac_contract::shutdown_channel();
    let server = tokio::spawn(run(args, shutdown));
    let client = reqwest::Client::new();
    for addr in [public, internal] {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while client
            .get(format!("http://{addr}{}", path::HEALTHZ))
            .send()
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{addr} never listened"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let stopped = std::time::Instant::now();
    stop.trigger();
    for (addr, served) in [(public, path::WELCOME), (internal, path::HEALTHZ)] {
        let ready = client
            .get(format!("http://{addr}{}", path::READYZ))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE, "{addr}");
        let body: Value = ready.json().await.unwrap();
        assert_eq!(body["shutdown"], "draining", "{addr}: {body}");
        let answer = client
            .get(format!("http://{addr}{served}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status(),
            StatusCode::OK,
            "{addr}{served} while draining"
        );
        assert_eq!(
            answer.headers()[header::CONNECTION],
            "close",
            "{addr}{served}"
        );
    }
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server did not stop after the drain")
        .unwrap()
        .unwrap();
    assert!(
        stopped.elapsed() >= Duration::from_millis(1500),
        "stopped {:?} after the request, before the drain was over",
        stopped.elapsed()
    );
    for addr in [public, internal] {
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "{addr} still listens"
        );
    }
}

/// A request slower than MULTIVAC_REQUEST_TIMEOUT_MS gets 503 `timeout`
/// (JSON, Retry-After) before the (5 s) backend timeout would give the
/// queue's error, and is counted.
#[tokio::test]
async fn slow_requests_time_out_with_503_and_are_counted() {
    let server =
        Server::start(&["--request-timeout-ms", "50", "--backend-timeout-ms", "5000"]).await;
    let answer = server
        .post(path::DATA, Some(FORM), b"data=slow".to_vec())
        .await;
    answer.assert_error(StatusCode::SERVICE_UNAVAILABLE, "timeout", "slow POST");
    assert_eq!(answer.headers[header::RETRY_AFTER], "1");
    let counted = [
        r#"multivac_http_requests_total{route="/multivac/data",method="POST",status="503"}"#,
        r#"multivac_http_errors_total{error="timeout"}"#,
    ];
    for line in counted {
        assert_eq!(server.metric(line), 1.0, "{line}");
    }
}

/// The request metrics count by matched route (the trailing slash trimmed
/// first, unknown paths as `unmatched`, never the raw path), method and
/// status, and time every route.
#[tokio::test]
async fn request_metrics_are_labelled_by_route_method_and_status() {
    let server = Server::start(&[]).await;
    for _ in 0..2 {
        server.post(path::DATA, Some(FORM), b"data=".to_vec()).await;
    }
    server
        .post(&format!("{}/", path::DATA), Some(FORM), b"x=1".to_vec())
        .await;
    server.get("/nowhere/secret-looking-path").await;
    server.get(path::DATA).await;
    server.get(&format!("{}/", path::WELCOME)).await;
    server.get(path::HEALTHZ).await;
    // A method the client made up is counted as `other`.
    server
        .send(
            Request::builder()
                .method(Method::from_bytes(b"MADE-UP-1234").unwrap())
                .uri(path::WELCOME)
                .body(Body::empty())
                .unwrap(),
        )
        .await;

    // (route label, method, status, requests counted)
    #[rustfmt::skip]
    let counted = [
        ("/multivac/data", "POST", 400, 3.0),
        ("unmatched", "GET", 404, 1.0),
        ("/multivac/data", "GET", 405, 1.0),
        ("/", "GET", 200, 1.0),
        ("/", "other", 405, 1.0),
        ("/healthz", "GET", 200, 1.0),
    ];
    for (route, method, status, count) in counted {
        let line = format!(
            r#"multivac_http_requests_total{{route="{route}",method="{method}",status="{status}"}}"#
        );
        assert_eq!(server.metric(&line), count, "{line}");
    }
    for (route, count) in [("/multivac/data", 4.0), ("unmatched", 1.0)] {
        let line = format!(r#"multivac_http_request_duration_seconds_count{{route="{route}"}}"#);
        assert_eq!(server.metric(&line), count, "{line}");
    }
    server.get(path::METRICS).await;
    let text = server.get(path::METRICS).await.text();
    assert!(!text.contains("secret-looking-path"), "{text}");
    assert!(!text.contains("MADE-UP"), "{text}");
    // A scrape is counted in the next one.
    assert!(
        text.contains(
            r#"multivac_http_requests_total{route="/metrics",method="GET",status="200"}"#
        ),
        "{text}"
    );
}

#[test]
fn form_fields_decode_strictly() {
    assert_eq!(
        form_data(b"x=1&data=Let+there%20be+light%21").unwrap(),
        vec!["Let there be light!"]
    );
    assert!(form_data(b"x=1").unwrap().is_empty());
    assert!(matches!(
        form_data(b"data=%FF%FE"),
        Err(ApiError::InvalidUtf8)
    ));
}

#[test]
fn zzz_states() {
    let empty = Backlog::default();
    let queued = Backlog {
        undelivered: 3,
        pending: 1,
    };
    assert_eq!(zzz_state(false, &empty), "asleep");
    assert_eq!(zzz_state(false, &queued), "learning");
    assert_eq!(zzz_state(true, &queued), "enlightened");
    assert_eq!(zzz_state(true, &empty), "enlightened");
}

#[test]
fn token_is_required_only_when_set() {
    let mut settings = Settings {
        required_concepts: 1,
        max_data_bytes: 10,
        api_token: None,
        request_timeout: Duration::from_secs(1),
        max_in_flight: 1,
    };
    let mut headers = HeaderMap::new();
    assert!(authorize(&settings, &headers).is_ok());
    settings.api_token = Some(ApiToken::parse("s3cret\n").unwrap());
    assert!(authorize(&settings, &headers).is_err());
    for (authorization, accepted) in [
        ("Bearer wrong", false),
        ("Bearer ", false),
        ("Bearer s3cret", true),
        ("bearer s3cret", true),
        ("Bearer s3cret ", true),
    ] {
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static(authorization),
        );
        assert_eq!(
            authorize(&settings, &headers).is_ok(),
            accepted,
            "{authorization:?}"
        );
    }
}
