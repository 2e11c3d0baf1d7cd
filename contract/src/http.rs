//! `/healthz`, `/readyz` and `/metrics`, the same in the app server, the
//! worker's probe server and the operator, and the one way they are served.

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tower::Layer;
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};

use crate::path;
use crate::shutdown::Shutdown;
use crate::telemetry::METRICS_CONTENT_TYPE;

/// What a process tells its probes and Prometheus; [`probe_routes`] serves it.
pub trait Probes: Send + Sync + 'static {
    /// The `/readyz` answer: every dependency the process needs, checked now.
    fn readiness(&self) -> impl Future<Output = Readiness> + Send;
    /// The `/metrics` body ([`encode_metrics`](crate::encode_metrics)), with
    /// any gauge that is read on demand refreshed first.
    fn metrics(&self) -> impl Future<Output = String> + Send;
}

/// The `/readyz` answer: `200 {"status": "ready", "<check>": "ok", ...}` when
/// every gating check passed, else `503` with `"unready"`, so one request
/// tells which dependency is missing.
///
/// The body names each check's state with one fixed word (`ok`,
/// `unavailable`, `draining`), never an error text: the probes answer anyone
/// who can reach the port, and a backend's error carries its host name and
/// user. The error itself goes to the log (debug level: probes come every few
/// seconds; the code that talks to the backend logs its failures).
#[derive(Debug, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, &'static str, bool)>,
}

/// A check's word in the body when it passed.
const OK: &str = "ok";
/// A check's word in the body when it failed.
const UNAVAILABLE: &str = "unavailable";

impl Readiness {
    /// Adds the outcome of checking `name`; a failure makes the answer 503.
    pub fn check<E: std::fmt::Display>(self, name: &'static str, result: Result<(), E>) -> Self {
        self.add(name, result, true)
    }

    /// Adds the state of `name` without gating on it: the answer says whether
    /// it works, and stays 200 when it does not (a dependency the process
    /// copes without, such as MongoDB for the server's intake).
    pub fn report<E: std::fmt::Display>(self, name: &'static str, result: Result<(), E>) -> Self {
        self.add(name, result, false)
    }

    /// Marks the process as stopping: 503 with `"shutdown": "draining"`, so
    /// load balancers take it out while it still serves what reaches it.
    pub fn draining(mut self) -> Self {
        self.checks.push(("shutdown", "draining", true));
        self
    }

    fn add<E: std::fmt::Display>(
        mut self,
        name: &'static str,
        result: Result<(), E>,
        gates: bool,
    ) -> Self {
        let word = match result {
            Ok(()) => OK,
            Err(e) => {
                tracing::debug!(check = name, error = %e, "readiness check failed");
                UNAVAILABLE
            }
        };
        self.checks.push((name, word, gates));
        self
    }

    /// True when every gating check passed.
    pub fn is_ready(&self) -> bool {
        self.checks
            .iter()
            .all(|(_, word, gates)| !gates || *word == OK)
    }
}

impl IntoResponse for Readiness {
    fn into_response(self) -> Response {
        let ready = self.is_ready();
        let mut body = Map::new();
        body.insert(
            "status".into(),
            json!(if ready { "ready" } else { "unready" }),
        );
        for (name, word, _) in self.checks {
            body.insert(name.into(), json!(word));
        }
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (status, Json(Value::Object(body))).into_response()
    }
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "alive"}))
}

async fn readyz<P: Probes>(State(probes): State<Arc<P>>) -> Readiness {
    probes.readiness().await
}

async fn metrics<P: Probes>(State(probes): State<Arc<P>>) -> Response {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        probes.metrics().await,
    )
        .into_response()
}

/// [`path::HEALTHZ`], [`path::READYZ`] and [`path::METRICS`] answered by
/// `probes`, as a router to serve alone or merge into a bigger one.
pub fn probe_routes<P: Probes, S: Clone + Send + Sync + 'static>(probes: Arc<P>) -> Router<S> {
    health_routes(probes.clone()).merge(metrics_route(probes))
}

/// [`path::HEALTHZ`] and [`path::READYZ`] alone: what a public port serves
/// besides its API (load balancers probe them), without the figures.
pub fn health_routes<P: Probes, S: Clone + Send + Sync + 'static>(probes: Arc<P>) -> Router<S> {
    Router::new()
        .route(path::HEALTHZ, get(healthz))
        .route(path::READYZ, get(readyz::<P>))
        .with_state(probes)
}

/// [`path::METRICS`] alone, for an internal port.
pub fn metrics_route<P: Probes, S: Clone + Send + Sync + 'static>(probes: Arc<P>) -> Router<S> {
    Router::new()
        .route(path::METRICS, get(metrics::<P>))
        .with_state(probes)
}

/// `router` as it is served: every route answers with and without a trailing
/// slash. The seed's "/zzz/ has a bug" was a route that answered only one of
/// the two spellings; trimming the slash before routing fixes that for every
/// route at once, including ones added later.
pub fn http_service(router: Router) -> NormalizePath<Router> {
    NormalizePathLayer::trim_trailing_slash().layer(router)
}

/// Serves [`http_service`]`(router)` on `listener` until `shutdown`, then
/// lets the requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    serve_with_drain(listener, router, shutdown, Drain::default()).await
}

/// How a server stops after a stop request (see [`serve_with_drain`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drain {
    /// How long it keeps accepting and serving requests after the stop
    /// request, so that load balancers see it unready and stop sending
    /// before it stops listening.
    pub serve_for: Duration,
    /// How long the requests still in flight then get to finish before the
    /// remaining connections are dropped.
    pub finish_within: Option<Duration>,
}

/// [`serve`], with a drain: after `shutdown` it keeps serving for
/// `drain.serve_for` (the caller's `/readyz` should say `draining`
/// meanwhile, and every answer asks the client to close its connection so
/// kept-alive clients reconnect elsewhere), then stops accepting, lets the
/// requests in flight finish (at most `drain.finish_within`) and returns.
pub async fn serve_with_drain(
    listener: TcpListener,
    router: Router,
    shutdown: Shutdown,
    drain: Drain,
) -> std::io::Result<()> {
    let closing = shutdown.clone();
    let router = router.layer(axum::middleware::from_fn(
        move |request: Request, next: axum::middleware::Next| {
            let closing = closing.clone();
            async move {
                let mut response = next.run(request).await;
                if closing.is_triggered() {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                response
            }
        },
    ));
    let mut stop = shutdown.clone();
    let served = axum::serve(
        listener,
        axum::ServiceExt::<Request>::into_make_service(http_service(router)),
    )
    .with_graceful_shutdown(async move {
        stop.wait().await;
        if !drain.serve_for.is_zero() {
            tracing::info!(
                seconds = drain.serve_for.as_secs_f64(),
                "draining: still serving while unready"
            );
            tokio::time::sleep(drain.serve_for).await;
        }
        tracing::info!("no longer accepting connections; finishing the requests in flight");
    })
    .into_future();
    let Some(finish_within) = drain.finish_within else {
        return served.await;
    };
    let mut stop = shutdown;
    let deadline = async move {
        stop.wait().await;
        tokio::time::sleep(drain.serve_for + finish_within).await;
    };
    tokio::select! {
        result = served => result,
        () = deadline => {
            tracing::warn!(
                seconds = finish_within.as_secs_f64(),
                "requests still in flight after the drain; dropping their connections"
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;

    struct Fake {
        ready: AtomicBool,
        scrapes: AtomicU64,
    }

    impl Probes for Fake {
        async fn readiness(&self) -> Readiness {
            let ready = self.ready.load(Ordering::Relaxed);
            let failure = || Err("mongodb://user@db.internal:27017 is down");
            Readiness::default()
                .check("always", Ok::<(), String>(()))
                .check("sometimes", if ready { Ok(()) } else { failure() })
                .report("optional", if ready { Ok(()) } else { failure() })
        }

        async fn metrics(&self) -> String {
            let n = self.scrapes.fetch_add(1, Ordering::Relaxed) + 1;
            format!("scrapes {n}\n")
        }
    }

    async fn get(service: &NormalizePath<Router>, uri: &str) -> (StatusCode, String, String) {
        let request = Request::builder().uri(uri).body(Body::empty()).unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    fn service(ready: bool) -> NormalizePath<Router> {
        let fake = Arc::new(Fake {
            ready: AtomicBool::new(ready),
            scrapes: AtomicU64::new(0),
        });
        http_service(probe_routes(fake))
    }

    #[tokio::test]
    async fn probes_answer_with_and_without_a_trailing_slash() {
        let service = service(true);
        for path in [path::HEALTHZ, path::READYZ, path::METRICS] {
            for spelling in [path.to_owned(), format!("{path}/")] {
                let (status, _, _) = get(&service, &spelling).await;
                assert_eq!(status, StatusCode::OK, "GET {spelling}");
            }
        }
    }

    #[tokio::test]
    async fn health_routes_leave_the_metrics_out() {
        let fake = Arc::new(Fake {
            ready: AtomicBool::new(true),
            scrapes: AtomicU64::new(0),
        });
        let health = http_service(health_routes(fake.clone()));
        assert_eq!(get(&health, path::HEALTHZ).await.0, StatusCode::OK);
        assert_eq!(get(&health, path::READYZ).await.0, StatusCode::OK);
        assert_eq!(get(&health, path::METRICS).await.0, StatusCode::NOT_FOUND);
        let metrics = http_service(metrics_route(fake.clone()));
        assert_eq!(get(&metrics, path::METRICS).await.2, "scrapes 1\n");
        assert_eq!(get(&metrics, path::HEALTHZ).await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn healthz_is_alive_and_readyz_names_each_check() {
        let up = service(true);
        let (status, _, body) = get(&up, path::HEALTHZ).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, r#"{"status":"alive"}"#)
        );
        let (status, content_type, body) = get(&up, path::READYZ).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "application/json");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body,
            json!({"status": "ready", "always": "ok", "sometimes": "ok", "optional": "ok"})
        );

        let down = service(false);
        let (status, _, body) = get(&down, path::READYZ).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        // A fixed word, never the error text (which names hosts and users).
        assert!(!body.contains("db.internal"), "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body,
            json!({"status": "unready", "always": "ok", "sometimes": "unavailable", "optional": "unavailable"})
        );
        // Liveness does not depend on readiness.
        assert_eq!(get(&down, path::HEALTHZ).await.0, StatusCode::OK);
    }

    #[test]
    fn reported_states_do_not_gate_and_draining_does() {
        let failed: Result<(), &str> = Err("mongodb://user@db.internal down");
        let reported = Readiness::default()
            .check("redis", Ok::<(), String>(()))
            .report("mongodb", failed);
        assert!(reported.is_ready());
        let response = reported.into_response();
        assert_eq!(response.status(), StatusCode::OK);
        let draining = Readiness::default()
            .check("redis", Ok::<(), String>(()))
            .draining();
        assert!(!draining.is_ready());
        assert_eq!(
            draining.into_response().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn metrics_are_produced_per_scrape_with_the_openmetrics_type() {
        let service = service(true);
        let (status, content_type, body) = get(&service, path::METRICS).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, METRICS_CONTENT_TYPE);
        assert_eq!(body, "scrapes 1\n");
        assert_eq!(get(&service, path::METRICS).await.2, "scrapes 2\n");
    }

    #[tokio::test]
    async fn serve_stops_when_asked() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown) = crate::shutdown::channel();
        let router = Router::new().route("/x", axum::routing::get(|| async { "x" }));
        let server = tokio::spawn(serve(listener, router, shutdown));
        // The server answers (a raw HTTP/1.1 request, trailing slash trimmed) ...
        let answer = raw_get(addr, "/x/").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // ... and returns once triggered.
        trigger.trigger();
        tokio::time::timeout(std::time::Duration::from_secs(10), server)
            .await
            .expect("serve did not return within 10 s of the trigger")
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_drain_keeps_serving_with_connection_close_then_stops() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown) = crate::shutdown::channel();
        let router = Router::new().route("/x", axum::routing::get(|| async { "x" }));
        let drain = Drain {
            serve_for: std::time::Duration::from_millis(400),
            finish_within: Some(std::time::Duration::from_secs(1)),
        };
        let server = tokio::spawn(serve_with_drain(listener, router, shutdown, drain));
        let before = raw_get_keep_alive(addr, "/x").await;
        assert!(before.starts_with("HTTP/1.1 200"), "{before}");
        assert!(
            !before.to_ascii_lowercase().contains("connection: close"),
            "{before}"
        );
        let stopped = std::time::Instant::now();
        trigger.trigger();
        // Still served during the drain, each answer closing its connection.
        let during = raw_get_keep_alive(addr, "/x").await;
        assert!(during.starts_with("HTTP/1.1 200"), "{during}");
        assert!(
            during.to_ascii_lowercase().contains("connection: close"),
            "{during}"
        );
        tokio::time::timeout(std::time::Duration::from_secs(10), server)
            .await
            .expect("serve did not return after the drain")
            .unwrap()
            .unwrap();
        assert!(
            stopped.elapsed() >= drain.serve_for,
            "stopped {:?} after the trigger, before the drain ended",
            stopped.elapsed()
        );
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    /// One HTTP/1.1 request without `Connection: close`: reads the head of
    /// the answer only (the connection may stay open).
    async fn raw_get_keep_alive(addr: std::net::SocketAddr, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = vec![0; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    async fn raw_get(addr: std::net::SocketAddr, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }
}
