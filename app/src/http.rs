//! The HTTP API of `multivac server`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::error_handling::HandleErrorLayer;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{BoxError, Json, Router};
use multivac_contract::{
    Backlog, Drain, Probes, Readiness, Shutdown, encode_metrics, env, health_routes, metrics_route,
    path,
};
use serde::Serialize;
use serde_json::json;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;

use crate::auth::ApiToken;
use crate::config::{ServerArgs, ms};
use crate::intake::{BacklogGate, Full};
use crate::knowledge::{self, KnowledgeCache, Reading};
use crate::metrics::{ErrorLabels, RequestLabels, RouteLabels, ServerMetrics, method_label};
use crate::queue::{Heartbeat, Queue, QueueError};
use crate::store::{Knowledge, Store};

#[cfg(test)]
mod tests;

/// The only question MultiVAC answers.
const QUESTION: &str = "How can the entropy of the universe be reversed?";
/// The answer until enough concepts have been learned.
const INSUFFICIENT: &str = "INSUFFICIENT DATA FOR MEANINGFUL ANSWER.";
/// The answer once MultiVAC knows enough.
const ENLIGHTENED: &str = "LET THERE BE LIGHT!";
/// Seconds a client should wait before retrying when a backend is down or
/// the server is busy.
const RETRY_AFTER_SECONDS: &str = "1";
/// Seconds a client should wait before retrying when the queue is full:
/// the workers need time to drain it.
const RETRY_AFTER_FULL_SECONDS: &str = "5";
/// Extra time, beyond the request timeout, that the requests in flight get
/// after the drain before their connections are dropped.
const FINISH_MARGIN: Duration = Duration::from_secs(1);

/// Server settings the handlers need.
#[derive(Clone, Debug)]
struct Settings {
    required_concepts: u64,
    max_data_bytes: usize,
    api_token: Option<ApiToken>,
    request_timeout: Duration,
    max_in_flight: usize,
}

/// Everything the handlers share.
struct AppState {
    queue: Queue,
    settings: Settings,
    metrics: ServerMetrics,
    knowledge: Arc<KnowledgeCache>,
    backlog: BacklogGate,
    shutdown: Shutdown,
    /// The `MULTIVAC_MAX_IN_FLIGHT` slots, one set for every listener.
    in_flight: GlobalConcurrencyLimitLayer,
}

impl AppState {
    /// Lazily connected clients and the settings, from the command line:
    /// nothing here needs Redis or MongoDB to be up.
    async fn connect(args: &ServerArgs, shutdown: Shutdown) -> Result<Self, crate::Error> {
        let backend_timeout = ms(args.backend_timeout_ms);
        let redis_ca = args.common.redis_ca()?;
        let store = Arc::new(
            Store::connect_with_ca(
                &args.common.mongodb_uri,
                &args.common.mongodb_database,
                args.common.mongodb_ca()?,
                backend_timeout,
            )
            .await?,
        );
        let metrics = ServerMetrics::default();
        metrics
            .required_concepts
            .set(i64::try_from(args.required_concepts).unwrap_or(i64::MAX));
        let gauges = knowledge::Gauges {
            mongodb_up: metrics.mongodb_up.clone(),
            concepts: metrics.concepts.clone(),
        };
        Ok(AppState {
            queue: Queue::connect_with_ca(
                &args.common.redis_url,
                redis_ca.as_deref(),
                backend_timeout,
            )?,
            knowledge: Arc::new(KnowledgeCache::new(
                store,
                ms(args.stats_ttl_ms),
                backend_timeout,
                gauges,
            )),
            settings: Settings {
                required_concepts: args.required_concepts,
                max_data_bytes: args.max_data_bytes,
                api_token: args.api_token.clone(),
                request_timeout: ms(args.request_timeout_ms),
                max_in_flight: args.max_in_flight as usize,
            },
            metrics,
            backlog: BacklogGate::new(args.max_backlog),
            shutdown,
            in_flight: GlobalConcurrencyLimitLayer::new(args.max_in_flight as usize),
        })
    }
}

impl Probes for AppState {
    /// Ready when the server can queue (Redis answers) and is not draining.
    /// MongoDB is reported, not gated on: intake does not need it, and an
    /// unready server would leave the Service exactly when the queue is
    /// there to absorb a MongoDB outage.
    async fn readiness(&self) -> Readiness {
        let redis = self.queue.ping().await;
        let mongodb = match self.knowledge.reachable() {
            Some(true) => Ok(()),
            Some(false) => Err("the last read failed"),
            None => Err("not read yet"),
        };
        let readiness = Readiness::default()
            .check("redis", redis)
            .report("mongodb", mongodb);
        if self.shutdown.is_triggered() {
            readiness.draining()
        } else {
            readiness
        }
    }

    async fn metrics(&self) -> String {
        let backlog = match self.backlog.enabled() {
            true => self.backlog.last(),
            false => self.queue.backlog().await.ok(),
        };
        if let Some(backlog) = backlog {
            self.metrics.backlog.set(backlog.total() as i64);
            self.metrics.pending.set(backlog.pending as i64);
        }
        if let Some(age) = self.knowledge.age() {
            self.metrics.knowledge_age.set(age.as_secs_f64());
        }
        encode_metrics(&self.metrics.registry)
    }
}

/// An error answer: a status, a stable code and a message saying what to do.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error(
        "the form field `data` is missing; send data=<text> as a form, multipart or JSON {{\"data\": \"...\"}}"
    )]
    MissingData,
    #[error("`data` is empty; send some text to learn from")]
    EmptyData,
    #[error("`data` must be a string")]
    DataNotString,
    #[error("send `data` once per request, not {0} times")]
    RepeatedData(usize),
    #[error("the request body is not valid UTF-8")]
    InvalidUtf8,
    #[error("malformed {kind} body: {detail}")]
    Malformed { kind: &'static str, detail: String },
    #[error(
        "`data` is {size} bytes; the limit is {limit} bytes ({var})",
        var = env::MAX_DATA_BYTES
    )]
    TooLarge { size: usize, limit: usize },
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error(
        "unsupported content type {0:?}; use application/x-www-form-urlencoded, multipart/form-data or application/json"
    )]
    UnsupportedMediaType(String),
    #[error(
        "missing or wrong bearer token; send Authorization: Bearer <{var}>",
        var = env::API_TOKEN
    )]
    Unauthorized,
    #[error(
        "the backlog holds {backlog} data, the bound is {max} ({var}); nothing was accepted, retry later",
        var = env::MAX_BACKLOG
    )]
    BacklogFull { backlog: u64, max: u64 },
    #[error("the queue is full (Redis is at its maxmemory); nothing was accepted, retry later")]
    QueueFull(#[source] QueueError),
    #[error("{}; nothing was accepted, retry later", queue_trouble(.0))]
    QueueUnavailable(#[source] QueueError),
    #[error(
        "the queue did not confirm the datum (the connection to Redis broke or timed out): it may have been accepted; retry later, knowing that a retry may store it twice"
    )]
    QueueUnconfirmed(#[source] QueueError),
    #[error("the knowledge store is unavailable and no answer is known yet; retry later")]
    StoreUnavailable,
    #[error("the server is at its limit of requests in flight ({limit}, {var}); retry later", var = env::MAX_IN_FLIGHT)]
    Overloaded { limit: usize },
    #[error("the request took longer than {limit:?} ({var}); if it was a POST it may or may not have been accepted", var = env::REQUEST_TIMEOUT_MS)]
    Timeout { limit: Duration },
    #[error("no route for {0}; try GET /, GET /multivac, POST /multivac/data or GET /zzz/")]
    NotFound(String),
    #[error(
        "GET {0} is served on the internal port ({bind}, 9090 by default), not on this one{hint}",
        bind = env::METRICS_BIND,
        hint = if *.0 == path::ZZZ {
            format!("; set {}=true to serve it here too", env::PUBLIC_ZZZ)
        } else {
            String::new()
        }
    )]
    InternalOnly(&'static str),
    #[error("{0} is not allowed here")]
    MethodNotAllowed(Method),
}

/// What is wrong with the queue, from Redis' error code.
fn queue_trouble(e: &QueueError) -> &'static str {
    match e.redis_code() {
        Some("LOADING") => "the queue is loading its data after a restart",
        Some("READONLY") => "the queue is a read-only replica (a failover is under way?)",
        Some("MISCONF") => "the queue cannot persist data (Redis reports a disk error)",
        _ => "the queue is unavailable",
    }
}

impl ApiError {
    fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            MissingData
            | EmptyData
            | DataNotString
            | RepeatedData(_)
            | InvalidUtf8
            | Malformed { .. } => StatusCode::BAD_REQUEST,
            TooLarge { .. } | BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Unauthorized => StatusCode::UNAUTHORIZED,
            BacklogFull { .. }
            | QueueFull(_)
            | QueueUnavailable(_)
            | QueueUnconfirmed(_)
            | StoreUnavailable
            | Overloaded { .. }
            | Timeout { .. } => StatusCode::SERVICE_UNAVAILABLE,
            NotFound(_) | InternalOnly(_) => StatusCode::NOT_FOUND,
            MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            MissingData => "missing_data",
            EmptyData => "empty_data",
            DataNotString => "data_not_string",
            RepeatedData(_) => "repeated_data",
            InvalidUtf8 => "invalid_utf8",
            Malformed { .. } => "malformed_body",
            TooLarge { .. } | BodyTooLarge { .. } => "data_too_large",
            UnsupportedMediaType(_) => "unsupported_media_type",
            Unauthorized => "unauthorized",
            BacklogFull { .. } => "backlog_full",
            QueueFull(_) => "queue_full",
            QueueUnavailable(_) => "queue_unavailable",
            QueueUnconfirmed(_) => "queue_unconfirmed",
            StoreUnavailable => "store_unavailable",
            Overloaded { .. } => "overloaded",
            Timeout { .. } => "timeout",
            NotFound(_) => "not_found",
            InternalOnly(_) => "internal_only",
            MethodNotAllowed(_) => "method_not_allowed",
        }
    }

    /// The Retry-After of a 503: longer when the queue is full, since the
    /// workers need time to drain it.
    fn retry_after(&self) -> Option<&'static str> {
        use ApiError::*;
        match self {
            BacklogFull { .. } | QueueFull(_) => Some(RETRY_AFTER_FULL_SECONDS),
            QueueUnavailable(_)
            | QueueUnconfirmed(_)
            | StoreUnavailable
            | Overloaded { .. }
            | Timeout { .. } => Some(RETRY_AFTER_SECONDS),
            _ => None,
        }
    }
}

/// A queue error as the answer to a POST: full, unavailable (nothing was
/// queued), or unconfirmed (the XADD may have run: the connection broke
/// after it was sent, or no answer came in time).
fn queue_refusal(e: QueueError) -> ApiError {
    if e.redis_code() == Some("OOM") {
        ApiError::QueueFull(e)
    } else if e.surely_not_executed() {
        ApiError::QueueUnavailable(e)
    } else {
        ApiError::QueueUnconfirmed(e)
    }
}

/// The error code of an error answer, for the `record` middleware.
#[derive(Clone, Copy)]
struct ErrorCode(&'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            // The source carries the backend's redacted address and cause.
            let cause = std::error::Error::source(&self)
                .map(|s| s.to_string())
                .unwrap_or_default();
            tracing::warn!(code = self.code(), %cause, "{self}");
        }
        let body = Json(json!({"error": self.code(), "message": self.to_string()}));
        let mut response = (status, body).into_response();
        response.extensions_mut().insert(ErrorCode(self.code()));
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
        }
        if let ApiError::Unauthorized = self {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// What one listener serves. The public port (the Service's, the Ingress's)
/// has the API and the probes; `/metrics` and `/zzz` (the backlog, the
/// workers, what MultiVAC knows) are on the internal port unless `/zzz` is
/// asked for publicly; an address given for both serves everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Exposed {
    api: bool,
    zzz: bool,
    metrics: bool,
}

impl Exposed {
    const ALL: Self = Self {
        api: true,
        zzz: true,
        metrics: true,
    };
    const INTERNAL: Self = Self {
        api: false,
        zzz: true,
        metrics: true,
    };
    fn public(zzz: bool) -> Self {
        Self {
            api: true,
            zzz,
            metrics: false,
        }
    }
}

/// The routes of one listener and their layers; `multivac_contract::serve`
/// adds the trailing-slash normalisation (tests add it with `http_service`).
///
/// The API routes and `/zzz` are behind the in-flight limit, one limit for
/// the whole server (both listeners share it): one request over
/// `MULTIVAC_MAX_IN_FLIGHT` is refused at once (503 `overloaded`) instead of
/// waiting for a slot until it times out. The probes and /metrics are not,
/// so the kubelet and Prometheus still reach an overloaded server. Every
/// route has the request timeout (503 `timeout`) and is counted.
fn routes(state: Arc<AppState>, exposed: Exposed) -> Router {
    let limit = state.settings.max_in_flight;
    let mut limited = Router::new();
    if exposed.api {
        limited = limited
            .route(path::WELCOME, get(welcome))
            .route(path::QUESTION, get(question))
            .route(path::DATA, post(post_data));
    }
    if exposed.zzz {
        limited = limited.route(path::ZZZ, get(zzz));
    }
    let mut router = limited.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |_: BoxError| async move {
                ApiError::Overloaded { limit }
            }))
            .layer(LoadShedLayer::new())
            .layer(state.in_flight.clone()),
    );
    for (path, served) in [(path::ZZZ, exposed.zzz), (path::METRICS, exposed.metrics)] {
        if !served {
            // Says where it is, rather than the generic 404.
            router = router.route(
                path,
                get(move || async move { ApiError::InternalOnly(path) }),
            );
        }
    }
    router = router.merge(health_routes(state.clone()));
    if exposed.metrics {
        router = router.merge(metrics_route(state.clone()));
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), timeout))
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .with_state(state)
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

/// Cuts a request at `MULTIVAC_REQUEST_TIMEOUT_MS` with a JSON answer (the
/// `record` middleware around it counts it).
async fn timeout(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let limit = state.settings.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout { limit }.into_response(),
    }
}

async fn record(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(request.method());
    let response = next.run(request).await;
    let elapsed = start.elapsed().as_secs_f64();
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            route: route.clone(),
            method,
            status: response.status().as_u16(),
        })
        .inc();
    if let Some(ErrorCode(error)) = response.extensions().get::<ErrorCode>() {
        state
            .metrics
            .errors
            .get_or_create(&ErrorLabels { error })
            .inc();
    }
    state
        .metrics
        .latency
        .get_or_create(&RouteLabels { route })
        .observe(elapsed);
    response
}

async fn welcome() -> &'static str {
    "Welcome to MultiVAC!"
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json"))
}

/// The JSON form of the answer.
#[derive(Debug, Serialize)]
struct Answer {
    question: &'static str,
    answer: &'static str,
    meaningful: bool,
    knowledge: KnowledgeView,
    backlog: Option<u64>,
    /// True when MongoDB did not answer lately: the figures are the last
    /// known, `age_seconds` old.
    stale: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    age_seconds: Option<u64>,
}

#[derive(Debug, Serialize)]
struct KnowledgeView {
    concepts: u64,
    required: u64,
    data_processed: u64,
}

/// The figures and, when they are stale, their age.
fn figures(reading: Reading) -> Result<(Knowledge, Option<Duration>), ApiError> {
    match reading {
        Reading::Fresh(knowledge) => Ok((knowledge, None)),
        Reading::Stale { knowledge, age } => Ok((knowledge, Some(age))),
        Reading::Unknown => Err(ApiError::StoreUnavailable),
    }
}

/// `GET /multivac`. During a MongoDB outage it answers at once from the last
/// figures known, with `Age: <seconds>` (and `"stale": true` in JSON), or
/// 503 `store_unavailable` when none are known.
async fn question(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (knowledge, age) = figures(state.knowledge.read().await)?;
    let meaningful = knowledge.concepts >= state.settings.required_concepts;
    let answer = if meaningful {
        ENLIGHTENED
    } else {
        INSUFFICIENT
    };
    let mut response = if wants_json(&headers) {
        // The backlog is extra information: the answer stands without Redis.
        let backlog = state.queue.backlog().await.ok().map(|b| b.total());
        Json(Answer {
            question: QUESTION,
            answer,
            meaningful,
            knowledge: KnowledgeView {
                concepts: knowledge.concepts,
                required: state.settings.required_concepts,
                data_processed: knowledge.data_processed,
            },
            backlog,
            stale: age.is_some(),
            age_seconds: age.map(|a| a.as_secs()),
        })
        .into_response()
    } else {
        answer.into_response()
    };
    if let Some(age) = age {
        response
            .headers_mut()
            .insert(header::AGE, HeaderValue::from(age.as_secs()));
    }
    Ok(response)
}

/// MultiVAC's state for /zzz.
#[derive(Debug, Serialize)]
struct Zzz {
    state: &'static str,
    backlog: u64,
    undelivered: u64,
    pending: u64,
    dead_letters: u64,
    /// `ok`, or `unavailable` while MongoDB does not answer (the figures
    /// below are then the last known, or null).
    mongodb: &'static str,
    data_processed: Option<u64>,
    concepts: Option<u64>,
    required_concepts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    knowledge_age_seconds: Option<u64>,
    workers: Vec<Heartbeat>,
}

/// `enlightened` wins over the queue state: once the answer is meaningful
/// it stays so; otherwise `learning` while anything is queued, else `asleep`.
fn zzz_state(meaningful: bool, backlog: &Backlog) -> &'static str {
    if meaningful {
        "enlightened"
    } else if backlog.total() > 0 {
        "learning"
    } else {
        "asleep"
    }
}

async fn zzz(State(state): State<Arc<AppState>>) -> Result<Json<Zzz>, ApiError> {
    let (backlog, workers, dead, reading) = tokio::join!(
        state.queue.backlog(),
        state.queue.live_workers(),
        state.queue.dead_letters(),
        state.knowledge.read()
    );
    let backlog = backlog.map_err(ApiError::QueueUnavailable)?;
    let workers = workers.map_err(ApiError::QueueUnavailable)?;
    let dead_letters = dead.map_err(ApiError::QueueUnavailable)?;
    let (knowledge, age) = match reading {
        Reading::Fresh(k) => (Some(k), None),
        Reading::Stale { knowledge, age } => (Some(knowledge), Some(age)),
        Reading::Unknown => (None, None),
    };
    let meaningful = knowledge.is_some_and(|k| k.concepts >= state.settings.required_concepts);
    Ok(Json(Zzz {
        state: zzz_state(meaningful, &backlog),
        backlog: backlog.total(),
        undelivered: backlog.undelivered,
        pending: backlog.pending,
        dead_letters,
        mongodb: if state.knowledge.reachable() == Some(true) {
            "ok"
        } else {
            "unavailable"
        },
        data_processed: knowledge.map(|k| k.data_processed),
        concepts: knowledge.map(|k| k.concepts),
        required_concepts: state.settings.required_concepts,
        knowledge_age_seconds: age.map(|a| a.as_secs()),
        workers,
    }))
}

/// The three body encodings POST accepts.
enum BodyKind {
    Form,
    Multipart(String),
    Json,
}

fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not ASCII)"))
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/x-www-form-urlencoded" => Ok(BodyKind::Form),
        "application/json" => Ok(BodyKind::Json),
        "multipart/form-data" => multer::parse_boundary(content_type)
            .map(BodyKind::Multipart)
            .map_err(|e| ApiError::Malformed {
                kind: "multipart",
                detail: e.to_string(),
            }),
        "" => Err(ApiError::UnsupportedMediaType("(none)".to_owned())),
        _ => Err(ApiError::UnsupportedMediaType(content_type.to_owned())),
    }
}

fn authorize(settings: &Settings, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &settings.api_token else {
        return Ok(());
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    // A missing header is refused without comparing; the comparison itself
    // takes the same time for every presented value (see `auth`).
    match presented {
        Some(presented) if token.accepts(presented) => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
}

/// The body allowed for a `max` byte datum: percent-encoding can triple it,
/// plus room for multipart headers and other fields.
fn body_limit(max: usize) -> usize {
    max.saturating_mul(3).saturating_add(16 * 1024)
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let inner = e.into_inner();
        if inner
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            ApiError::BodyTooLarge { limit }
        } else {
            ApiError::Malformed {
                kind: "request",
                detail: inner.to_string(),
            }
        }
    })
}

/// Every value of the field `data` in an urlencoded form, decoded strictly:
/// a value that is not UTF-8 is an error, never silently replaced.
fn form_data(body: &[u8]) -> Result<Vec<String>, ApiError> {
    let mut values = Vec::new();
    for pair in body.split(|b| *b == b'&') {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        if decode_form_component(name)? == "data" {
            values.push(decode_form_component(value)?);
        }
    }
    Ok(values)
}

fn decode_form_component(raw: &[u8]) -> Result<String, ApiError> {
    let plus_as_space: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    let bytes: Vec<u8> = percent_encoding::percent_decode(&plus_as_space).collect();
    String::from_utf8(bytes).map_err(|_| ApiError::InvalidUtf8)
}

async fn multipart_data(body: Bytes, boundary: String) -> Result<Vec<String>, ApiError> {
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let malformed = |e: multer::Error| ApiError::Malformed {
        kind: "multipart",
        detail: e.to_string(),
    };
    let mut values = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(malformed)? {
        if field.name() == Some("data") {
            let bytes = field.bytes().await.map_err(malformed)?;
            values.push(String::from_utf8(bytes.to_vec()).map_err(|_| ApiError::InvalidUtf8)?);
        }
    }
    Ok(values)
}

fn json_data(body: &[u8]) -> Result<Vec<String>, ApiError> {
    std::str::from_utf8(body).map_err(|_| ApiError::InvalidUtf8)?;
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::Malformed {
            kind: "JSON",
            detail: e.to_string(),
        })?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::Malformed {
            kind: "JSON",
            detail: "expected an object like {\"data\": \"...\"}".to_owned(),
        });
    };
    match object.get("data") {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::String(s)) => Ok(vec![s.clone()]),
        Some(_) => Err(ApiError::DataNotString),
    }
}

/// Finds the one datum in a POST body, or says what is wrong with it.
async fn extract_data(
    headers: &HeaderMap,
    body: Body,
    max_data_bytes: usize,
) -> Result<String, ApiError> {
    let kind = body_kind(headers)?;
    let bytes = read_body(body, body_limit(max_data_bytes)).await?;
    let mut values = match kind {
        BodyKind::Form => form_data(&bytes)?,
        BodyKind::Multipart(boundary) => multipart_data(bytes, boundary).await?,
        BodyKind::Json => json_data(&bytes)?,
    };
    let data = match values.len() {
        0 => return Err(ApiError::MissingData),
        1 => values.pop().expect("one value"),
        n => return Err(ApiError::RepeatedData(n)),
    };
    if data.trim().is_empty() {
        return Err(ApiError::EmptyData);
    }
    if data.len() > max_data_bytes {
        return Err(ApiError::TooLarge {
            size: data.len(),
            limit: max_data_bytes,
        });
    }
    Ok(data)
}

async fn post_data(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    authorize(&state.settings, &headers)?;
    let data = extract_data(&headers, body, state.settings.max_data_bytes).await?;
    let place = state
        .backlog
        .reserve()
        .map_err(|Full { backlog, max }| ApiError::BacklogFull { backlog, max })?;
    let id = match state.queue.push(&data).await {
        Ok(id) => id,
        Err(e) => {
            place.cancel();
            return Err(queue_refusal(e));
        }
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"response": "MultiVAC updated!", "id": id})),
    ))
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound(format!("{} {}", request.method(), request.uri().path()))
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method)
}

/// `multivac server`: serves the API until a stop request, keeps serving
/// (unready) for the drain period, then lets in-flight requests finish.
pub(crate) async fn run(args: ServerArgs, shutdown: Shutdown) -> Result<(), crate::Error> {
    let state = Arc::new(AppState::connect(&args, shutdown.clone()).await?);
    tracing::info!(
        redis = state.queue.redacted_url(),
        database = %args.common.mongodb_database,
        required_concepts = args.required_concepts,
        auth = state.settings.api_token.is_some(),
        max_backlog = args.max_backlog,
        max_in_flight = args.max_in_flight,
        drain_ms = args.drain_ms,
        "starting server"
    );
    // The group makes the backlog figures right before any worker ran; a
    // Redis that is down now is not fatal, the workers create it later.
    if let Err(e) = state.queue.ensure_group().await {
        tracing::warn!(error = %e, "could not create the consumer group yet");
    }
    state.knowledge.refresh();
    tokio::spawn(crate::queue::report_eviction_policy(
        state.queue.clone(),
        state.metrics.redis_policy.clone(),
        shutdown.clone(),
    ));
    if state.backlog.enabled() {
        let gate = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            gate.backlog
                .run(
                    gate.queue.clone(),
                    gate.metrics.backlog.clone(),
                    gate.metrics.pending.clone(),
                    shutdown,
                )
                .await
        });
    }
    // Every listener drains alike: /readyz says `draining` on each (one
    // state), each keeps serving for the drain period, then stops accepting
    // and lets its requests in flight finish.
    let drain = Drain {
        serve_for: ms(args.drain_ms),
        finish_within: Some(state.settings.request_timeout + FINISH_MARGIN),
    };
    if args.metrics_bind == args.bind {
        let listener = listen(args.bind).await?;
        return serve(listener, routes(state, Exposed::ALL), shutdown, drain).await;
    }
    // Both addresses are taken before either serves: a port in use stops
    // the process at once instead of leaving half a server.
    let public_listener = listen(args.bind).await?;
    let internal_listener = listen(args.metrics_bind).await?;
    let public = routes(state.clone(), Exposed::public(args.public_zzz));
    let internal = routes(state, Exposed::INTERNAL);
    tokio::try_join!(
        serve(public_listener, public, shutdown.clone(), drain),
        serve(internal_listener, internal, shutdown, drain),
    )
    .map(|_| ())
}

/// Listens on `addr`, logging where.
async fn listen(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, crate::Error> {
    let listener = crate::listen(addr).await?;
    let addr = listener.local_addr().unwrap_or(addr);
    tracing::info!(%addr, "serving HTTP");
    Ok(listener)
}

/// Serves `router` on `listener` until `shutdown`, then drains.
async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: Shutdown,
    drain: Drain,
) -> Result<(), crate::Error> {
    multivac_contract::serve_with_drain(listener, router, shutdown, drain)
        .await
        .map_err(crate::Error::Serve)
}
