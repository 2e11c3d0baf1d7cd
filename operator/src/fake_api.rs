//! An API server in memory, for the fast test tier (as in kube-rs'
//! controller-rs `fixtures.rs`): a `kube::Client` over a tower-test mock
//! service, answered by a task that keeps objects by path, records every
//! request, and returns the errors a test injects. It knows just enough of
//! the API server's behaviour for the reconciler: GET (whole object or
//! metadata), server-side apply, create (409 when the name is taken),
//! delete, status patches and Events.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tower_test::mock::{self, Handle};

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub(crate) struct Recorded {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) body: Option<Value>,
}

impl Recorded {
    /// `METHOD path`, how the scenarios list the requests they expect.
    pub(crate) fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    fn is_event(&self) -> bool {
        self.path.starts_with("/apis/events.k8s.io/")
    }
}

/// An error to answer a request with, once.
struct Fault {
    method: Method,
    path: String,
    code: u16,
    reason: &'static str,
    /// Stored before answering: what another writer made meanwhile.
    store: Option<(String, Value)>,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    requests: Vec<Recorded>,
    faults: Vec<Fault>,
    uids: u64,
}

/// The fake API server; dropping it stops it.
pub(crate) struct FakeApi {
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApi {
    /// A client talking to a new, empty fake.
    pub(crate) fn start() -> (kube::Client, FakeApi) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let state = Arc::new(Mutex::new(State::default()));
        let task = tokio::spawn(serve(handle, state.clone()));
        (
            kube::Client::new(service, "default"),
            FakeApi { state, task },
        )
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake API state")
    }

    /// Stores `object` at `path` as if someone had created it.
    pub(crate) fn put(&self, path: &str, object: Value) {
        let mut state = self.state();
        let object = state.stored(object, None);
        state.objects.insert(path.into(), object);
    }

    /// The object at `path`.
    pub(crate) fn get(&self, path: &str) -> Option<Value> {
        self.state().objects.get(path).cloned()
    }

    /// Changes the object at `path` in place (a user's edit, a controller's status).
    pub(crate) fn edit(&self, path: &str, edit: impl FnOnce(&mut Value)) {
        edit(
            self.state()
                .objects
                .get_mut(path)
                .unwrap_or_else(|| panic!("no object at {path}")),
        );
    }

    /// Every stored object whose path starts with `prefix`.
    pub(crate) fn paths(&self, prefix: &str) -> Vec<String> {
        let state = self.state();
        state
            .objects
            .keys()
            .filter(|p| p.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Answers the next `method path` with `code` and `reason`.
    pub(crate) fn fail(&self, method: Method, path: &str, code: u16, reason: &'static str) {
        self.state().faults.push(Fault {
            method,
            path: path.into(),
            code,
            reason,
            store: None,
        });
    }

    /// Answers the next `method path` with `code` after storing `object` at
    /// `at`: another writer won a race.
    pub(crate) fn lose_race(&self, method: Method, path: &str, code: u16, at: &str, object: Value) {
        let mut state = self.state();
        let object = state.stored(object, None);
        state.faults.push(Fault {
            method,
            path: path.into(),
            code,
            reason: "AlreadyExists",
            store: Some((at.into(), object)),
        });
    }

    /// Every request but the Events', in order.
    pub(crate) fn requests(&self) -> Vec<Recorded> {
        let state = self.state();
        state
            .requests
            .iter()
            .filter(|r| !r.is_event())
            .cloned()
            .collect()
    }

    /// `METHOD path` of every request but GETs and Events, in order.
    pub(crate) fn writes(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter(|r| r.method != Method::GET)
            .map(Recorded::line)
            .collect()
    }

    /// `(reason, note)` of every Event published, in order.
    pub(crate) fn events(&self) -> Vec<(String, String)> {
        let state = self.state();
        state
            .requests
            .iter()
            .filter(|r| r.is_event())
            .filter_map(|r| r.body.as_ref())
            .map(|e| {
                let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                (text("reason"), text("note"))
            })
            .collect()
    }

    /// Forgets the requests seen so far.
    pub(crate) fn clear(&self) {
        self.state().requests.clear();
    }
}

impl State {
    /// `object` as the API server stores it: a uid, a resourceVersion, a
    /// generation, and what `previous` had that the writer did not send.
    fn stored(&mut self, mut object: Value, previous: Option<&Value>) -> Value {
        self.uids += 1;
        let meta = &mut object["metadata"];
        let uid = previous
            .map(|p| p["metadata"]["uid"].clone())
            .unwrap_or_else(|| json!(format!("uid-{}", self.uids)));
        if meta.get("uid").is_none() {
            meta["uid"] = uid;
        }
        meta["resourceVersion"] = json!(self.uids.to_string());
        let generation = previous.map_or(1, |p| {
            let g = p["metadata"]["generation"].as_i64().unwrap_or(1);
            if p["spec"] == object["spec"] {
                g
            } else {
                g + 1
            }
        });
        object["metadata"]["generation"] = json!(generation);
        if let Some(p) = previous {
            if object.get("status").is_none() && p.get("status").is_some() {
                object["status"] = p["status"].clone();
            }
            // Another field manager's (the scaler's) replicas stay.
            if object["kind"] == "Deployment" && object["spec"].get("replicas").is_none() {
                object["spec"]["replicas"] = p["spec"]["replicas"].clone();
            }
        }
        if object["kind"] == "Deployment" && object["spec"].get("replicas").is_none() {
            object["spec"]["replicas"] = json!(1);
        }
        object
    }

    fn answer(&mut self, request: &Recorded, metadata_only: bool) -> (StatusCode, Value) {
        if let Some(i) = self
            .faults
            .iter()
            .position(|f| f.method == request.method && f.path == request.path)
        {
            let fault = self.faults.remove(i);
            if let Some((at, object)) = fault.store {
                self.objects.insert(at, object);
            }
            let message = format!(
                "{} {}: injected {}",
                request.method, request.path, fault.reason
            );
            return failure(fault.code, fault.reason, &message);
        }
        if request.is_event() {
            return (
                StatusCode::CREATED,
                request.body.clone().unwrap_or_default(),
            );
        }
        let path = request.path.as_str();
        match request.method {
            Method::GET => match self.objects.get(path) {
                Some(o) if metadata_only => (
                    StatusCode::OK,
                    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                           "metadata": o["metadata"]}),
                ),
                Some(o) => (StatusCode::OK, o.clone()),
                None => not_found(path),
            },
            Method::POST => {
                let body = request.body.clone().unwrap_or_default();
                let name = body["metadata"]["name"].as_str().unwrap_or_default();
                let at = format!("{path}/{name}");
                if self.objects.contains_key(&at) {
                    return failure(409, "AlreadyExists", &format!("{at} already exists"));
                }
                let object = self.stored(body, None);
                self.objects.insert(at, object.clone());
                (StatusCode::CREATED, object)
            }
            Method::PATCH => match path.strip_suffix("/status") {
                Some(parent) => {
                    let Some(object) = self.objects.get_mut(parent) else {
                        return not_found(parent);
                    };
                    let patch = request.body.clone().unwrap_or_default();
                    merge_status(object, &patch["status"]);
                    (StatusCode::OK, object.clone())
                }
                None => {
                    let previous = self.objects.get(path).cloned();
                    let body = request.body.clone().unwrap_or_default();
                    let object = self.stored(body, previous.as_ref());
                    self.objects.insert(path.into(), object.clone());
                    let code = match previous {
                        Some(_) => StatusCode::OK,
                        None => StatusCode::CREATED,
                    };
                    (code, object)
                }
            },
            Method::DELETE => match self.objects.remove(path) {
                Some(_) => (
                    StatusCode::OK,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
                ),
                None => not_found(path),
            },
            _ => failure(405, "MethodNotAllowed", "not served by the fake"),
        }
    }
}

/// Server-side apply of a status, roughly: the fields sent replace the
/// stored ones, conditions are merged by type (the list is a map keyed by
/// `type`), and what the sender did not send stays.
fn merge_status(object: &mut Value, sent: &Value) {
    let Some(sent) = sent.as_object() else { return };
    if !object["status"].is_object() {
        object["status"] = json!({});
    }
    for (key, value) in sent {
        match key.as_str() {
            "conditions" => {
                let mut merged: Vec<Value> = object["status"]["conditions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for c in value.as_array().into_iter().flatten() {
                    merged.retain(|m| m["type"] != c["type"]);
                    merged.push(c.clone());
                }
                object["status"]["conditions"] = json!(merged);
            }
            "workers" => {
                let workers = &mut object["status"]["workers"];
                if !workers.is_object() {
                    *workers = json!({});
                }
                for (k, v) in value.as_object().into_iter().flatten() {
                    workers[k] = v.clone();
                }
            }
            _ => object["status"][key] = value.clone(),
        }
    }
}

fn not_found(path: &str) -> (StatusCode, Value) {
    failure(404, "NotFound", &format!("{path} not found"))
}

fn failure(code: u16, reason: &str, message: &str) -> (StatusCode, Value) {
    (
        StatusCode::from_u16(code).expect("an HTTP status code"),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

async fn serve(mut handle: Handle<Request<Body>, Response<Body>>, state: Arc<Mutex<State>>) {
    while let Some((request, respond)) = handle.next_request().await {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap_or_default();
        let metadata_only = parts
            .headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("PartialObjectMetadata"));
        let recorded = Recorded {
            method: parts.method.clone(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or_default().to_string(),
            body: serde_json::from_slice(&bytes).ok(),
        };
        let (code, answer) = {
            let mut state = state.lock().expect("fake API state");
            let answer = state.answer(&recorded, metadata_only);
            state.requests.push(recorded);
            answer
        };
        let response = Response::builder()
            .status(code)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(&answer).expect("JSON")))
            .expect("a response");
        respond.send_response(response);
    }
}
