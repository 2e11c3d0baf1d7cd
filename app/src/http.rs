//! The HTTP API of `multivac server`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use multivac_contract::{
    Backlog, Probes, Readiness, encode_metrics, env, health_routes, metrics_route, path,
};
use serde::Serialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;

use crate::config::{ServerArgs, ms};
use crate::metrics::{RequestLabels, RouteLabels, ServerMetrics};
use crate::queue::{Heartbeat, Queue, QueueError};
use crate::store::{Knowledge, Store, StoreError};

#[cfg(test)]
mod tests;

/// The only question MultiVAC answers.
const QUESTION: &str = "How can the entropy of the universe be reversed?";
/// The answer until enough concepts have been learned.
const INSUFFICIENT: &str = "INSUFFICIENT DATA FOR MEANINGFUL ANSWER.";
/// The answer once MultiVAC knows enough.
const ENLIGHTENED: &str = "LET THERE BE LIGHT!";
/// Seconds a client should wait before retrying when a backend is down.
const RETRY_AFTER_SECONDS: &str = "1";

/// Server settings the handlers need.
#[derive(Clone, Debug)]
struct Settings {
    required_concepts: u64,
    max_data_bytes: usize,
    api_token: Option<String>,
    stats_ttl: Duration,
}

/// Everything the handlers share.
struct AppState {
    queue: Queue,
    store: Store,
    settings: Settings,
    metrics: ServerMetrics,
    knowledge_cache: Mutex<Option<(Instant, Knowledge)>>,
}

impl AppState {
    /// Lazily connected clients and the settings, from the command line:
    /// nothing here needs Redis or MongoDB to be up.
    async fn connect(args: &ServerArgs) -> Result<Self, crate::Error> {
        let backend_timeout = ms(args.backend_timeout_ms);
        let redis_ca = args.common.redis_ca()?;
        Ok(AppState {
            queue: Queue::connect_with_ca(
                &args.common.redis_url,
                redis_ca.as_deref(),
                backend_timeout,
            )?,
            store: Store::connect_with_ca(
                &args.common.mongodb_uri,
                &args.common.mongodb_database,
                args.common.mongodb_ca()?,
                backend_timeout,
            )
            .await?,
            settings: Settings {
                required_concepts: args.required_concepts,
                max_data_bytes: args.max_data_bytes,
                api_token: args.api_token.clone().filter(|t| !t.is_empty()),
                stats_ttl: ms(args.stats_ttl_ms),
            },
            metrics: ServerMetrics::default(),
            knowledge_cache: Mutex::new(None),
        })
    }

    /// The knowledge figures, reused for `stats_ttl` so that heavy polling
    /// costs at most one pair of count queries per period. The lock makes
    /// concurrent callers wait for one query instead of each sending one.
    async fn knowledge(&self) -> Result<Knowledge, StoreError> {
        let mut cache = self.knowledge_cache.lock().await;
        if let Some((at, knowledge)) = *cache
            && at.elapsed() < self.settings.stats_ttl
        {
            return Ok(knowledge);
        }
        let knowledge = self.store.knowledge().await?;
        *cache = Some((Instant::now(), knowledge));
        Ok(knowledge)
    }
}

impl Probes for AppState {
    async fn readiness(&self) -> Readiness {
        backends_readiness(&self.queue, &self.store).await
    }

    async fn metrics(&self) -> String {
        if let Ok(backlog) = self.queue.backlog().await {
            self.metrics.backlog.set(backlog.total() as i64);
            self.metrics.pending.set(backlog.pending as i64);
        }
        encode_metrics(&self.metrics.registry)
    }
}

/// `/readyz` of the server and of the workers: both need Redis and MongoDB.
pub(crate) async fn backends_readiness(queue: &Queue, store: &Store) -> Readiness {
    let (redis, mongo) = tokio::join!(queue.ping(), store.ping());
    Readiness::default()
        .check("redis", redis)
        .check("mongodb", mongo)
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
    #[error("the queue is unavailable, nothing was accepted; retry later")]
    QueueUnavailable(#[source] QueueError),
    #[error("the knowledge store is unavailable; retry later")]
    StoreUnavailable(#[source] StoreError),
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
            QueueUnavailable(_) | StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
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
            QueueUnavailable(_) => "queue_unavailable",
            StoreUnavailable(_) => "store_unavailable",
            NotFound(_) => "not_found",
            InternalOnly(_) => "internal_only",
            MethodNotAllowed(_) => "method_not_allowed",
        }
    }
}

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
        let headers = response.headers_mut();
        match self {
            ApiError::QueueUnavailable(_) | ApiError::StoreUnavailable(_) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECONDS),
                );
            }
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
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
fn routes(state: Arc<AppState>, request_timeout: Duration, exposed: Exposed) -> Router {
    let mut router = Router::new();
    if exposed.api {
        router = router
            .route(path::WELCOME, get(welcome))
            .route(path::QUESTION, get(question))
            .route(path::DATA, post(post_data));
    }
    for (path, served) in [(path::ZZZ, exposed.zzz), (path::METRICS, exposed.metrics)] {
        if !served {
            // Says where it is, rather than the generic 404.
            router = router.route(
                path,
                get(move || async move { ApiError::InternalOnly(path) }),
            );
        }
    }
    if exposed.zzz {
        router = router.route(path::ZZZ, get(zzz));
    }
    router = router.merge(health_routes(state.clone()));
    if exposed.metrics {
        router = router.merge(metrics_route(state.clone()));
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .with_state(state)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            request_timeout,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

async fn record(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
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
}

#[derive(Debug, Serialize)]
struct KnowledgeView {
    concepts: u64,
    required: u64,
    data_processed: u64,
}

async fn question(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let knowledge = state
        .knowledge()
        .await
        .map_err(ApiError::StoreUnavailable)?;
    let meaningful = knowledge.concepts >= state.settings.required_concepts;
    let answer = if meaningful {
        ENLIGHTENED
    } else {
        INSUFFICIENT
    };
    if !wants_json(&headers) {
        return Ok(answer.into_response());
    }
    // The backlog is extra information: the answer stands without Redis.
    let backlog = state.queue.backlog().await.ok().map(|b| b.total());
    Ok(Json(Answer {
        question: QUESTION,
        answer,
        meaningful,
        knowledge: KnowledgeView {
            concepts: knowledge.concepts,
            required: state.settings.required_concepts,
            data_processed: knowledge.data_processed,
        },
        backlog,
    })
    .into_response())
}

/// MultiVAC's state for /zzz.
#[derive(Debug, Serialize)]
struct Zzz {
    state: &'static str,
    backlog: u64,
    undelivered: u64,
    pending: u64,
    dead_letters: u64,
    data_processed: u64,
    concepts: u64,
    required_concepts: u64,
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
    let (backlog, workers, dead, knowledge) = tokio::join!(
        state.queue.backlog(),
        state.queue.live_workers(),
        state.queue.dead_letters(),
        state.knowledge()
    );
    let backlog = backlog.map_err(ApiError::QueueUnavailable)?;
    let workers = workers.map_err(ApiError::QueueUnavailable)?;
    let dead_letters = dead.map_err(ApiError::QueueUnavailable)?;
    let knowledge = knowledge.map_err(ApiError::StoreUnavailable)?;
    let meaningful = knowledge.concepts >= state.settings.required_concepts;
    Ok(Json(Zzz {
        state: zzz_state(meaningful, &backlog),
        backlog: backlog.total(),
        undelivered: backlog.undelivered,
        pending: backlog.pending,
        dead_letters,
        data_processed: knowledge.data_processed,
        concepts: knowledge.concepts,
        required_concepts: state.settings.required_concepts,
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
        })
        .map(str::trim)
        .unwrap_or("");
    // Constant time, so response timing does not leak the token.
    if bool::from(presented.as_bytes().ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
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
    let id = state
        .queue
        .push(&data)
        .await
        .map_err(ApiError::QueueUnavailable)?;
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

/// `multivac server`: serves the API until a stop request, then lets
/// in-flight requests finish.
pub(crate) async fn run(
    args: ServerArgs,
    shutdown: multivac_contract::Shutdown,
) -> Result<(), crate::Error> {
    let state = Arc::new(AppState::connect(&args).await?);
    tracing::info!(
        redis = state.queue.redacted_url(),
        mongodb = state.store.redacted_uri(),
        database = %args.common.mongodb_database,
        required_concepts = args.required_concepts,
        auth = state.settings.api_token.is_some(),
        "starting server"
    );
    // The group makes the backlog figures right before any worker ran; a
    // Redis that is down now is not fatal, the workers create it later.
    if let Err(e) = state.queue.ensure_group().await {
        tracing::warn!(error = %e, "could not create the consumer group yet");
    }
    let timeout = ms(args.request_timeout_ms);
    if args.metrics_bind == args.bind {
        return serve(args.bind, routes(state, timeout, Exposed::ALL), shutdown).await;
    }
    let public = routes(state.clone(), timeout, Exposed::public(args.public_zzz));
    let internal = routes(state, timeout, Exposed::INTERNAL);
    tokio::try_join!(
        serve(args.bind, public, shutdown.clone()),
        serve(args.metrics_bind, internal, shutdown),
    )
    .map(|_| ())
}

/// Listens on `addr` and serves `router` there until `shutdown`.
async fn serve(
    addr: std::net::SocketAddr,
    router: Router,
    shutdown: multivac_contract::Shutdown,
) -> Result<(), crate::Error> {
    let listener = crate::listen(addr).await?;
    let addr = listener.local_addr().unwrap_or(addr);
    tracing::info!(%addr, "serving HTTP");
    multivac_contract::serve(listener, router, shutdown)
        .await
        .map_err(crate::Error::Serve)
}
