//! The reconciler against the in-memory API server ([`crate::fake_api`]):
//! the requests it sends and what it makes of the answers, including the
//! errors a real API server rarely produces on demand.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::controller::Action;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use super::{error_policy, reconcile};
use crate::cache::{Cached, Caches};
use crate::cluster::Object;
use crate::context::Context;
use crate::crd::MultiVac;
use crate::error::Error;
use crate::fake_api::FakeApi;
use crate::resources::MANAGED_BY;

const MV: &str = "/apis/multivac.io/v1alpha1/namespaces/ns/multivacs/mv";
const SECRETS: &str = "/api/v1/namespaces/ns/secrets";
const CREDENTIALS: &str = "/api/v1/namespaces/ns/secrets/mv-credentials";
const SERVER: &str = "/apis/apps/v1/namespaces/ns/deployments/mv-server";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/ns/deployments/";
const PDB: &str = "/apis/policy/v1/namespaces/ns/poddisruptionbudgets/mv-server";
const INGRESS: &str = "/apis/networking.k8s.io/v1/namespaces/ns/ingresses/mv-server";
const CONFIG: &str = "/api/v1/namespaces/ns/configmaps/mv-config";
const REDIS_PVC: &str = "/api/v1/namespaces/ns/persistentvolumeclaims/mv-redis-data";
const MONGODB_PVC: &str = "/api/v1/namespaces/ns/persistentvolumeclaims/mv-mongodb-data";
/// The ServiceAccount of the previous release, named like the MultiVac.
const OLD_SERVICE_ACCOUNT: &str = "/api/v1/namespaces/ns/serviceaccounts/mv";
/// The ConfigMap of the script that made the app's MongoDB user on MongoDB's
/// first start, in earlier releases.
const OLD_INIT_SCRIPT: &str = "/api/v1/namespaces/ns/configmaps/mv-mongodb-init";

/// Every child of the minimal MultiVac, in the order they are applied.
const CHILDREN: [&str; 13] = [
    "/api/v1/namespaces/ns/serviceaccounts/mv-multivac",
    "/api/v1/namespaces/ns/configmaps/mv-config",
    "/apis/apps/v1/namespaces/ns/deployments/mv-server",
    "/api/v1/namespaces/ns/services/mv-server",
    "/apis/apps/v1/namespaces/ns/deployments/mv-worker",
    "/api/v1/namespaces/ns/persistentvolumeclaims/mv-redis-data",
    "/apis/apps/v1/namespaces/ns/deployments/mv-redis",
    "/api/v1/namespaces/ns/services/mv-redis",
    "/apis/networking.k8s.io/v1/namespaces/ns/networkpolicies/mv-redis",
    "/api/v1/namespaces/ns/persistentvolumeclaims/mv-mongodb-data",
    "/apis/apps/v1/namespaces/ns/deployments/mv-mongodb",
    "/api/v1/namespaces/ns/services/mv-mongodb",
    "/apis/networking.k8s.io/v1/namespaces/ns/networkpolicies/mv-mongodb",
];

/// A reconciler whose client talks to a [`FakeApi`] holding one MultiVac.
struct Harness {
    api: FakeApi,
    ctx: Arc<Context>,
    registry: Arc<Mutex<Registry>>,
}

impl Harness {
    fn new(spec: Value) -> Self {
        Self::with_context(spec, |ctx| ctx)
    }

    /// [`Harness::new`] with an operator whose default app image is `image`.
    fn with_default_image(spec: Value, image: Option<&str>) -> Self {
        Self::with_context(spec, |ctx| {
            ctx.with_default_app_image(image.map(String::from))
        })
    }

    /// A harness whose context `adjust` changes first. The managed stores
    /// are unreachable: nothing listens on port 1, so they refuse at once.
    fn with_context(spec: Value, adjust: impl FnOnce(Context) -> Context) -> Self {
        let (client, api) = FakeApi::start();
        api.put(MV, multivac("mv-uid", spec));
        let registry = Arc::new(Mutex::new(Registry::default()));
        let ctx = Context::new(client, registry.clone(), "multivac-system".into())
            .with_store_address("mv-redis.ns.svc:6379", "127.0.0.1:1")
            .with_store_address("mv-mongodb.ns.svc:27017", "127.0.0.1:1");
        let ctx = Arc::new(adjust(ctx));
        Self { api, ctx, registry }
    }

    /// MongoDB has the app's user: what the operator remembers once it saw
    /// the user there (the fake has no MongoDB to show it).
    fn app_user_exists(&self) {
        let uid = self.api.get(MV).expect("the MultiVac")["metadata"]["uid"].clone();
        let user = credential(&self.api, "mongodb-app-username");
        self.ctx
            .app_users_seen
            .lock()
            .unwrap()
            .insert("ns/mv".into(), format!("{}/{user}", uid.as_str().unwrap()));
    }

    /// Deletes the MultiVac as the garbage collector would (with every
    /// object it owns) and creates it again under the same name, with `uid`.
    fn recreate(&self, uid: &str, spec: Value) {
        let old = self.api.get(MV).expect("the MultiVac")["metadata"]["uid"].clone();
        for path in self.api.paths("/") {
            let owners = self.api.get(&path).unwrap()["metadata"]["ownerReferences"].clone();
            if owners
                .as_array()
                .into_iter()
                .flatten()
                .any(|o| o["uid"] == old)
            {
                self.api.remove(&path);
            }
        }
        self.api.remove(MV);
        self.api.put(MV, multivac(uid, spec));
    }

    /// The MultiVac as the fake stores it now.
    fn multivac(&self) -> Arc<MultiVac> {
        Arc::new(serde_json::from_value(self.api.get(MV).expect("the MultiVac")).unwrap())
    }

    /// One reconcile of the stored MultiVac, as the controller runs it: the
    /// controller's stores hold what the fake holds (their watches caught up).
    async fn reconcile(&self) -> Result<Action, Error> {
        self.sync_caches();
        reconcile(self.multivac(), self.ctx.clone()).await
    }

    /// Fills the stores of every kind the controller watches (Secrets are not
    /// watched) from the fake: the objects with the operator's managed-by
    /// label (the watches' selector), slimmed like the watches slim them.
    fn sync_caches(&self) {
        let mut caches = Caches::default();
        self.cache::<ServiceAccount>(&mut caches, "/api/v1/namespaces/ns/serviceaccounts/");
        self.cache::<ConfigMap>(&mut caches, "/api/v1/namespaces/ns/configmaps/");
        self.cache::<Deployment>(&mut caches, DEPLOYMENTS);
        self.cache::<Service>(&mut caches, "/api/v1/namespaces/ns/services/");
        self.cache::<PersistentVolumeClaim>(
            &mut caches,
            "/api/v1/namespaces/ns/persistentvolumeclaims/",
        );
        self.cache::<NetworkPolicy>(
            &mut caches,
            "/apis/networking.k8s.io/v1/namespaces/ns/networkpolicies/",
        );
        self.cache::<PodDisruptionBudget>(
            &mut caches,
            "/apis/policy/v1/namespaces/ns/poddisruptionbudgets/",
        );
        self.cache::<Ingress>(
            &mut caches,
            "/apis/networking.k8s.io/v1/namespaces/ns/ingresses/",
        );
        self.ctx.set_caches(caches);
    }

    fn cache<K: Object>(&self, caches: &mut Caches, prefix: &str) {
        let (store, mut writer) = reflector::store::<Cached<K>>();
        writer.apply_watcher_event(&Event::Init);
        for path in self.api.paths(prefix) {
            let mut object = self.api.get(&path).unwrap();
            if object["metadata"]["labels"]["app.kubernetes.io/managed-by"] != MANAGED_BY {
                continue;
            }
            object["metadata"]["namespace"] = json!("ns");
            let object: K = serde_json::from_value(object).unwrap();
            writer.apply_watcher_event(&Event::InitApply(Cached::new(object)));
        }
        writer.apply_watcher_event(&Event::InitDone);
        caches.insert(store);
    }

    /// What the controller would do after `error`.
    fn error_policy(&self, error: &Error) -> Action {
        error_policy(self.multivac(), error, self.ctx.clone())
    }

    /// The value of one series in `/metrics`.
    fn metric(&self, series: &str) -> f64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry.lock().unwrap())
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Every Deployment reports its pods available, as the Deployment controller would.
    fn roll_out(&self) {
        for path in self.api.paths(DEPLOYMENTS) {
            self.api.edit(&path, |d| {
                let replicas = d["spec"]["replicas"].clone();
                d["status"] = json!({"observedGeneration": d["metadata"]["generation"],
                    "replicas": replicas, "updatedReplicas": replicas,
                    "readyReplicas": replicas, "availableReplicas": replicas});
            });
        }
    }

    /// The reconciler's last status patch, as sent.
    fn status_sent(&self) -> Value {
        let path = format!("{MV}/status");
        let patch = self
            .api
            .requests()
            .into_iter()
            .rev()
            .find(|r| r.method == Method::PATCH && r.path == path)
            .expect("a status patch");
        patch.body.expect("a body")["status"].clone()
    }
}

fn multivac(uid: &str, spec: Value) -> Value {
    json!({"apiVersion": "multivac.io/v1alpha1", "kind": "MultiVac",
           "metadata": {"name": "mv", "namespace": "ns", "uid": uid}, "spec": spec})
}

/// The controller ownerReference of MultiVac `mv` with `uid`.
fn owned_by(uid: &str) -> Value {
    json!([{"apiVersion": "multivac.io/v1alpha1", "kind": "MultiVac", "name": "mv",
            "uid": uid, "controller": true}])
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

fn patch(path: &str) -> String {
    format!("PATCH {path}")
}

const WORKER: &str = "/apis/apps/v1/namespaces/ns/deployments/mv-worker";
const VOLUMES: [&str; 2] = [
    "/api/v1/namespaces/ns/persistentvolumeclaims/mv-redis-data",
    "/api/v1/namespaces/ns/persistentvolumeclaims/mv-mongodb-data",
];

fn b64(text: &str) -> Value {
    serde_json::to_value(k8s_openapi::ByteString(text.as_bytes().to_vec())).unwrap()
}

/// A value of the credentials Secret, decoded.
fn credential(api: &FakeApi, key: &str) -> String {
    let secret = api.get(CREDENTIALS).expect("the credentials Secret");
    let bytes: k8s_openapi::ByteString = serde_json::from_value(secret["data"][key].clone())
        .unwrap_or_else(|e| panic!("{key}: {e}"));
    String::from_utf8(bytes.0).unwrap()
}

/// The digest of its Secrets a Deployment's pod template carries.
fn secrets_hash(api: &FakeApi, deployment: &str) -> Value {
    api.get(deployment).unwrap()["spec"]["template"]["metadata"]["annotations"]
        ["multivac.io/secrets-hash"]
        .clone()
}

#[tokio::test]
async fn an_unchanged_multivac_makes_no_writes() {
    let h = Harness::new(json!({"image": "multivac:1"}));

    // First reconcile: the credentials Secret is created, then every child
    // is server-side applied as the reconciler, then the status.
    h.reconcile().await.unwrap();
    let mut expected = vec![format!("POST {SECRETS}")];
    expected.extend(CHILDREN.iter().map(|c| patch(c)));
    expected.push(patch(&format!("{MV}/status")));
    assert_eq!(h.api.writes(), expected);
    for r in h
        .api
        .requests()
        .iter()
        .filter(|r| r.method == Method::PATCH)
    {
        assert!(
            r.query.contains("fieldManager=multivac-operator") && r.query.contains("force=true"),
            "{} {}",
            r.line(),
            r.query
        );
    }
    let events = h.api.events();
    assert_eq!(events.len(), 1, "one Event for the reconcile: {events:?}");
    let (reason, note) = &events[0];
    assert_eq!(reason, "Created");
    assert!(
        note.starts_with("Created Secret/mv-credentials, ServiceAccount/mv-multivac, "),
        "{note}"
    );
    assert_eq!(note.matches(", ").count(), 13, "14 children: {note}");
    assert!(note.contains(", Deployment/mv-server, "), "{note}");
    let status = h.status_sent();
    assert_eq!(
        condition(&status, "Ready")["reason"],
        "ComponentsNotAvailable"
    );

    // The pods come up: one status write says so.
    h.roll_out();
    h.app_user_exists();
    h.api.clear();
    h.reconcile().await.unwrap();
    assert_eq!(h.api.writes(), [patch(&format!("{MV}/status"))]);
    assert_eq!(condition(&h.status_sent(), "Ready")["status"], "True");

    // Nothing changed: no write, no event, and the children are read from
    // the controller's stores: the one request is the credentials Secret's
    // metadata (Secrets are not watched).
    h.api.clear();
    let writes = h.metric("multivac_operator_api_writes_total{kind=\"Deployment\"}");
    let events = h.api.events().len();
    assert_eq!(
        h.reconcile().await.unwrap(),
        Action::requeue(Duration::from_secs(300))
    );
    let sent: Vec<String> = h.api.requests().iter().map(|r| r.line()).collect();
    assert_eq!(sent, [format!("GET {CREDENTIALS}")]);
    assert_eq!(h.api.events().len(), events, "no event");
    assert_eq!(
        h.metric("multivac_operator_api_writes_total{kind=\"Deployment\"}"),
        writes
    );
    assert_eq!(
        h.metric("multivac_operator_reconciliations_total{result=\"ok\"}"),
        3.0
    );
}

#[tokio::test]
async fn drift_is_repaired_with_one_write() {
    let h = Harness::new(json!({"image": "multivac:1"}));
    h.reconcile().await.unwrap();
    h.roll_out();
    h.app_user_exists();
    h.reconcile().await.unwrap();
    let worker = format!("{DEPLOYMENTS}mv-worker");
    h.api.edit(&worker, |d| {
        d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(1);
    });
    h.api.clear();
    let events = h.api.events().len();
    h.reconcile().await.unwrap();
    // The Deployment's new generation is not rolled out yet: Ready says so.
    assert_eq!(
        h.api.writes(),
        [patch(&worker), patch(&format!("{MV}/status"))]
    );
    assert_eq!(
        h.api.get(&worker).unwrap()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        60
    );
    assert_eq!(
        h.api.events()[events..],
        [("Updated".into(), "Updated Deployment/mv-worker".into())]
    );
}

#[tokio::test]
async fn a_lost_create_race_keeps_the_winners_credentials() {
    let h = Harness::new(json!({"image": "multivac:1"}));
    // Between our read (absent) and our create, another writer (an older
    // leader) creates the Secret: the create answers 409.
    let winner = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "mv-credentials", "namespace": "ns",
            "labels": {"app.kubernetes.io/name": "multivac", "app.kubernetes.io/instance": "mv",
                "app.kubernetes.io/component": "multivac", "app.kubernetes.io/part-of": "multivac",
                "app.kubernetes.io/managed-by": "multivac-operator"},
            "annotations": {"multivac.io/owner": "ns/mv"}},
        "stringData": {"redis-password": "the-winners", "redis-url": "the-winners",
            "mongodb-username": "the-winners", "mongodb-password": "the-winners",
            "mongodb-uri": "the-winners"}});
    h.api
        .lose_race(Method::POST, SECRETS, 409, CREDENTIALS, winner.clone());

    h.reconcile().await.unwrap();
    let stored = h.api.get(CREDENTIALS).unwrap();
    let winners = "dGhlLXdpbm5lcnM=";
    assert_eq!(
        stored["data"],
        json!({"redis-password": winners, "redis-url": winners, "mongodb-username": winners,
            "mongodb-password": winners, "mongodb-uri": winners}),
        "the winner's values stay"
    );
    let secret_writes: Vec<String> = h
        .api
        .writes()
        .into_iter()
        .filter(|w| w.contains("/secrets"))
        .collect();
    assert_eq!(
        secret_writes,
        [format!("POST {SECRETS}")],
        "nothing rewrites it"
    );
    assert!(
        !h.api.events().iter().any(|(_, n)| n.contains("Secret/")),
        "no Created event for a Secret we did not create: {:?}",
        h.api.events()
    );
    assert!(h.api.get(SERVER).is_some(), "the children are applied");
    // The next reconcile finds it, this MultiVac's: nothing to write.
    h.api.clear();
    h.reconcile().await.unwrap();
    assert!(
        !h.api.writes().iter().any(|w| w.contains("/secrets")),
        "{:?}",
        h.api.writes()
    );
}

#[tokio::test]
async fn a_refused_child_is_reported_while_every_other_child_is_applied() {
    let h = Harness::new(json!({"image": "multivac:1"}));
    h.api.fail(Method::PATCH, SERVER, 422, "Invalid");

    // Not an error to retry soon: the status says it, and the MultiVac is
    // checked again in 30 s (what fixes it may bring no event).
    assert_eq!(
        h.reconcile().await.unwrap(),
        Action::requeue(Duration::from_secs(30))
    );
    for child in CHILDREN.iter().filter(|c| **c != SERVER) {
        assert!(h.api.get(child).is_some(), "{child} applied all the same");
    }
    assert!(h.api.get(SERVER).is_none());
    let ready = condition(&h.status_sent(), "Ready").clone();
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("False"), &json!("ChildRejected"))
    );
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.starts_with("Deployment/mv-server refused by the API server (422 Invalid): ")
            && message.contains(&format!("PATCH {SERVER}: injected Invalid")),
        "the API server's own message: {message}"
    );
    assert_eq!(ready["observedGeneration"], 1);
    let warnings = |h: &Harness| -> Vec<String> {
        h.api
            .events()
            .into_iter()
            .filter(|(r, _)| r == "ChildRejected")
            .map(|(_, n)| n)
            .collect()
    };
    assert_eq!(warnings(&h), [message]);
    assert_eq!(
        h.metric("multivac_operator_reconcile_errors_total{error=\"child_rejected\"}"),
        1.0
    );

    // Refused again for the same reason: the status already says it.
    let status_writes = |h: &Harness| {
        h.api
            .writes()
            .iter()
            .filter(|w| w.ends_with("/status"))
            .count()
    };
    let before = status_writes(&h);
    h.api.fail(Method::PATCH, SERVER, 422, "Invalid");
    h.reconcile().await.unwrap();
    assert_eq!(
        warnings(&h).len(),
        1,
        "no second event for the same refusal"
    );
    assert_eq!(status_writes(&h), before, "no status write either");

    // Refused for another reason: a new event with the new message, next to the first.
    h.api.fail(Method::PATCH, SERVER, 403, "Forbidden");
    h.reconcile().await.unwrap();
    let notes = warnings(&h);
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[1].contains("(403 Forbidden)") && notes[1].contains("injected Forbidden"),
        "{notes:?}"
    );
    assert_eq!(
        condition(&h.status_sent(), "Ready")["message"],
        json!(notes[1])
    );

    // Accepted at last: created, and Ready follows the rollout again.
    h.reconcile().await.unwrap();
    assert!(h.api.get(SERVER).is_some());
    assert_eq!(
        condition(&h.status_sent(), "Ready")["reason"],
        "ComponentsNotAvailable"
    );
}

#[tokio::test]
async fn a_transient_error_backs_off_after_every_other_child_is_tried() {
    let h = Harness::new(json!({"image": "multivac:1"}));
    h.api.fail(Method::PATCH, SERVER, 500, "InternalError");

    let err = h.reconcile().await.unwrap_err();
    assert!(
        matches!(&err, Error::Kube(kube::Error::Api(s)) if s.code == 500),
        "{err}"
    );
    for child in CHILDREN.iter().filter(|c| **c != SERVER) {
        assert!(h.api.get(child).is_some(), "{child} applied all the same");
    }
    assert!(
        !h.api.writes().iter().any(|w| w.contains("/status")),
        "a status that may pass by itself is not reported: {:?}",
        h.api.writes()
    );
    assert_eq!(
        h.metric("multivac_operator_reconcile_errors_total{error=\"kube\"}"),
        1.0
    );
    let (reason, note) = h.api.events().last().unwrap().clone();
    assert_eq!(reason, "ReconcileFailed");
    assert!(note.contains("InternalError"), "{note}");
    // Transient: 1 s, then 2 s, 4 s ...
    for secs in [1, 2, 4] {
        assert_eq!(
            h.error_policy(&err),
            Action::requeue(Duration::from_secs(secs))
        );
    }
    // A success resets the backoff.
    h.reconcile().await.unwrap();
    assert!(h.api.get(SERVER).is_some());
    assert_eq!(
        h.error_policy(&err),
        Action::requeue(Duration::from_secs(1))
    );
}

#[tokio::test]
async fn objects_that_are_not_this_multivacs_are_left_untouched_and_reported() {
    let h = Harness::new(json!({"image": "multivac:1"}));
    let mut foreign = vec![
        // A user's ConfigMap, a PVC with someone's data, a Deployment another
        // controller runs, a Secret someone made: each with the name of a child.
        (CONFIG, json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "mv-config", "namespace": "ns"}, "data": {"mine": "yes"}})),
        (MONGODB_PVC, json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "mv-mongodb-data", "namespace": "ns"}, "spec": {"storageClassName": "theirs"}})),
        (&*format!("{DEPLOYMENTS}mv-worker"), json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "mv-worker", "namespace": "ns", "ownerReferences": [{"apiVersion": "x/v1",
                "kind": "Thing", "name": "t", "uid": "t-uid", "controller": true}]}, "spec": {}})),
        (CREDENTIALS, json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "mv-credentials", "namespace": "ns"}, "data": {"k": "dg=="}})),
    ]
    .into_iter()
    .map(|(path, object)| (path.to_string(), object))
    .collect::<Vec<_>>();
    for (path, object) in &foreign {
        h.api.put(path, object.clone());
    }
    let before: Vec<Value> = foreign.iter().map(|(p, _)| h.api.get(p).unwrap()).collect();

    assert_eq!(
        h.reconcile().await.unwrap(),
        Action::requeue(Duration::from_secs(30))
    );
    for ((path, _), was) in foreign.iter().zip(&before) {
        assert_eq!(
            &h.api.get(path).unwrap(),
            was,
            "{path} left exactly as it was"
        );
        assert!(
            !h.api.writes().iter().any(|w| w.ends_with(path.as_str())),
            "no write to {path}: {:?}",
            h.api.writes()
        );
    }
    assert!(
        !h.api.writes().contains(&format!("POST {SECRETS}")),
        "no Secret is generated over an existing one"
    );
    for child in [SERVER, REDIS_PVC, CHILDREN[0]] {
        assert!(h.api.get(child).is_some(), "{child} applied all the same");
    }
    let ready = condition(&h.status_sent(), "Ready").clone();
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("False"), &json!("Conflict"))
    );
    let message = ready["message"].as_str().unwrap();
    for needle in [
        "Secret/mv-credentials exists and is not this MultiVac's (it was not made for this MultiVac): \
         the operator leaves it untouched: delete or rename it, or give this MultiVac another name \
         (to hand it to this MultiVac, with its data, annotate it multivac.io/owner=ns/mv",
        "ConfigMap/mv-config exists and is not this MultiVac's (it was not made for this MultiVac): \
         the operator leaves it untouched: delete or rename it, or give this MultiVac another name;",
        "Deployment/mv-worker exists and is not this MultiVac's (it is controlled by Thing t)",
        "PersistentVolumeClaim/mv-mongodb-data exists and is not this MultiVac's",
    ] {
        assert!(message.contains(needle), "{needle:?} in {message}");
    }
    let conflicts: Vec<_> = h
        .api
        .events()
        .into_iter()
        .filter(|(r, _)| r == "Conflict")
        .collect();
    assert_eq!(conflicts.len(), 4, "one Warning per object: {conflicts:?}");
    assert_eq!(
        h.metric("multivac_operator_reconcile_errors_total{error=\"conflict\"}"),
        1.0
    );

    // The user removes their ConfigMap: the operator's own is created.
    h.api.remove(CONFIG);
    foreign.remove(0);
    h.reconcile().await.unwrap();
    assert_eq!(
        h.api.get(CONFIG).unwrap()["metadata"]["ownerReferences"],
        owned_by("mv-uid")
    );
    let message = condition(&h.status_sent(), "Ready")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!message.contains("ConfigMap"), "{message}");
}

#[tokio::test]
async fn retention_decides_whether_volumes_and_credentials_are_owned() {
    let h = Harness::new(json!({"image": "multivac:1"}));
    h.reconcile().await.unwrap();
    let owners = |path: &str| h.api.get(path).unwrap()["metadata"]["ownerReferences"].clone();
    // Retain (the default): nothing the garbage collector would follow.
    for path in [REDIS_PVC, MONGODB_PVC, CREDENTIALS] {
        assert!(
            owners(path).as_array().is_none_or(Vec::is_empty),
            "{path}: {}",
            owners(path)
        );
        assert_eq!(
            h.api.get(path).unwrap()["metadata"]["annotations"]["multivac.io/owner"],
            "ns/mv"
        );
    }
    assert_eq!(owners(CONFIG), owned_by("mv-uid"));

    // Delete: owned, so garbage-collected with the MultiVac.
    h.api
        .edit(MV, |mv| mv["spec"]["retention"] = json!("Delete"));
    h.api.clear();
    h.reconcile().await.unwrap();
    for path in [REDIS_PVC, MONGODB_PVC, CREDENTIALS] {
        assert_eq!(owners(path), owned_by("mv-uid"), "{path}");
    }
    // The Secret's data is never rewritten: only its metadata is patched.
    let secret_patch = h
        .api
        .requests()
        .into_iter()
        .find(|r| r.method == Method::PATCH && r.path == CREDENTIALS)
        .expect("a patch of the Secret");
    assert!(
        secret_patch
            .content_type
            .starts_with("application/strategic-merge-patch")
    );
    assert_eq!(
        secret_patch.body.unwrap(),
        json!({"metadata": {"ownerReferences": owned_by("mv-uid")}})
    );

    // And back.
    h.api
        .edit(MV, |mv| mv["spec"]["retention"] = json!("Retain"));
    h.reconcile().await.unwrap();
    for path in [REDIS_PVC, MONGODB_PVC, CREDENTIALS] {
        assert!(
            owners(path).as_array().is_none_or(Vec::is_empty),
            "{path}: {}",
            owners(path)
        );
    }
    h.api.clear();
    h.reconcile().await.unwrap();
    assert_eq!(
        h.api.writes(),
        Vec::<String>::new(),
        "settled: nothing more to write"
    );
}

#[tokio::test]
async fn a_multivac_created_again_takes_back_its_volumes_and_credentials() {
    let h = Harness::new(json!({"image": "multivac:1"}));
    h.reconcile().await.unwrap();
    let uid = |path: &str| h.api.get(path).unwrap()["metadata"]["uid"].clone();
    let kept = [REDIS_PVC, MONGODB_PVC, CREDENTIALS].map(|p| (p, uid(p)));
    let secret = h.api.get(CREDENTIALS).unwrap()["stringData"].clone();

    h.recreate("mv-uid-2", json!({"image": "multivac:1"}));
    assert!(
        h.api.get(SERVER).is_none(),
        "owned children went with the MultiVac"
    );
    h.api.clear();
    h.reconcile().await.unwrap();
    for (path, was) in &kept {
        assert_eq!(&uid(path), was, "{path} is the same object");
    }
    assert_eq!(
        h.api.get(CREDENTIALS).unwrap()["stringData"],
        secret,
        "the same passwords"
    );
    assert!(
        !h.api.writes().contains(&format!("POST {SECRETS}")),
        "{:?}",
        h.api.writes()
    );
    assert!(h.api.get(SERVER).is_some());
    assert_eq!(
        condition(&h.status_sent(), "Ready")["reason"],
        "ComponentsNotAvailable"
    );
}

#[tokio::test]
async fn a_child_of_a_deleted_multivac_is_waited_for_not_taken() {
    let h = Harness::new(json!({"image": "multivac:1"}));
    h.reconcile().await.unwrap();
    let server = h.api.get(SERVER).unwrap();
    // Deleted and created again before the garbage collector removed the
    // server Deployment.
    h.recreate("mv-uid-2", json!({"image": "multivac:1"}));
    h.api.put(SERVER, server.clone());
    h.api.clear();
    assert_eq!(
        h.reconcile().await.unwrap(),
        Action::requeue(Duration::from_secs(5))
    );
    assert!(
        !h.api.writes().iter().any(|w| w.ends_with(SERVER)),
        "{:?}",
        h.api.writes()
    );
    assert_eq!(
        h.api.get(SERVER).unwrap()["metadata"]["ownerReferences"],
        owned_by("mv-uid")
    );
    let ready = condition(&h.status_sent(), "Ready").clone();
    assert_eq!(ready["reason"], "WaitingForGarbageCollection");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("earlier MultiVac mv (uid mv-uid)"),
        "{ready}"
    );
    assert!(
        !h.api
            .events()
            .iter()
            .any(|(r, _)| r == "Conflict" || r == "ChildRejected")
    );

    h.api.remove(SERVER);
    h.reconcile().await.unwrap();
    assert_eq!(
        h.api.get(SERVER).unwrap()["metadata"]["ownerReferences"],
        owned_by("mv-uid-2")
    );
}

#[tokio::test]
async fn a_multivac_of_the_previous_release_is_upgraded_without_deleting_data() {
    let h = Harness::new(json!({"image": "multivac:1"}));
    // What the previous release made: every child controlled by the
    // MultiVac, no owner annotation, the ServiceAccount named `mv`.
    let legacy = |kind: &str, name: &str, extra: Value| {
        let mut o = json!({"apiVersion": "v1", "kind": kind,
            "metadata": {"name": name, "namespace": "ns", "ownerReferences": owned_by("mv-uid"),
                "labels": {"app.kubernetes.io/managed-by": "multivac-operator"}}});
        o.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        o
    };
    h.api.put(
        CREDENTIALS,
        legacy(
            "Secret",
            "mv-credentials",
            // As 0.1.0 made it: the root user in the URI, no app user.
            json!({"stringData": {"redis-password": "old", "redis-url": "redis://:old@mv-redis.ns.svc:6379/0",
                "mongodb-username": "multivac", "mongodb-password": "old",
                "mongodb-uri": "mongodb://multivac:old@mv-mongodb.ns.svc:27017/?authSource=admin"}}),
        ),
    );
    h.api.put(
        REDIS_PVC,
        legacy(
            "PersistentVolumeClaim",
            "mv-redis-data",
            json!({"spec": {}}),
        ),
    );
    h.api.put(
        OLD_SERVICE_ACCOUNT,
        legacy("ServiceAccount", "mv", json!({})),
    );
    let uid = |path: &str| h.api.get(path).unwrap()["metadata"]["uid"].clone();
    let (secret_uid, pvc_uid) = (uid(CREDENTIALS), uid(REDIS_PVC));

    h.reconcile().await.unwrap();
    let deletes: Vec<String> = h
        .api
        .writes()
        .into_iter()
        .filter(|w| w.starts_with("DELETE"))
        .collect();
    assert_eq!(
        deletes,
        [format!("DELETE {OLD_SERVICE_ACCOUNT}")],
        "only the old ServiceAccount"
    );
    assert!(!h.api.writes().contains(&format!("POST {SECRETS}")));
    assert_eq!((uid(CREDENTIALS), uid(REDIS_PVC)), (secret_uid, pvc_uid));
    let secret = h.api.get(CREDENTIALS).unwrap();
    assert_eq!(
        secret["data"]["redis-password"], "b2xk",
        "the passwords stay (\"old\", base64)"
    );
    for path in [CREDENTIALS, REDIS_PVC] {
        let meta = &h.api.get(path).unwrap()["metadata"];
        assert!(
            meta["ownerReferences"].as_array().is_none_or(Vec::is_empty),
            "{path}: {meta}"
        );
        assert_eq!(meta["annotations"]["multivac.io/owner"], "ns/mv", "{path}");
    }
    let pods = h.api.get(SERVER).unwrap()["spec"]["template"]["spec"]["serviceAccountName"].clone();
    assert_eq!(pods, "mv-multivac");
}

#[tokio::test]
async fn a_child_held_by_another_owner_is_never_deleted() {
    let ours = json!({"apiVersion": "multivac.io/v1alpha1", "kind": "MultiVac", "name": "mv",
        "uid": "mv-uid", "controller": true});
    let theirs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x",
        "uid": "someone-else", "controller": true});
    let not_controller = json!({"apiVersion": "multivac.io/v1alpha1", "kind": "MultiVac",
        "name": "mv", "uid": "mv-uid"});
    let redis_external = json!({"image": "multivac:1", "networkPolicy": {"enabled": false},
        "redis": {"external": {"secretRef": {"name": "r"}}}});
    let redis_deployment = format!("{DEPLOYMENTS}mv-redis");
    // (spec, child the spec no longer wants, its ownerReferences, deleted?)
    let cases = [
        (json!({"image": "multivac:1"}), PDB, json!([]), false),
        (json!({"image": "multivac:1"}), PDB, json!([theirs]), false),
        (
            json!({"image": "multivac:1"}),
            PDB,
            json!([not_controller]),
            false,
        ),
        (json!({"image": "multivac:1"}), PDB, json!([ours]), true),
        (
            redis_external.clone(),
            &redis_deployment,
            json!([theirs]),
            false,
        ),
        (redis_external, &redis_deployment, json!([ours]), true),
        // The previous release's ServiceAccount `mv`: deleted when this
        // MultiVac controls it; a user's (a MultiVac named `default` and the
        // namespace's own `default`) is never touched.
        (
            json!({"image": "multivac:1"}),
            OLD_SERVICE_ACCOUNT,
            json!([ours]),
            true,
        ),
        (
            json!({"image": "multivac:1"}),
            OLD_SERVICE_ACCOUNT,
            json!([]),
            false,
        ),
        // Earlier releases' first-start script: the operator makes the app's
        // MongoDB user itself now; a user's ConfigMap of that name stays.
        (
            json!({"image": "multivac:1"}),
            OLD_INIT_SCRIPT,
            json!([ours]),
            true,
        ),
        (
            json!({"image": "multivac:1"}),
            OLD_INIT_SCRIPT,
            json!([theirs]),
            false,
        ),
    ];
    for (spec, child, owners, deleted) in cases {
        let h = Harness::new(spec);
        h.api.put(
            "/api/v1/namespaces/ns/secrets/r",
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "r"},
                   "stringData": {"redis-url": "redis://r"}}),
        );
        let kind = match child {
            PDB => "PodDisruptionBudget",
            OLD_SERVICE_ACCOUNT => "ServiceAccount",
            OLD_INIT_SCRIPT => "ConfigMap",
            _ => "Deployment",
        };
        let name = child.rsplit('/').next().unwrap();
        // Labelled like the operator's children, so the controller's stores
        // hold it: whether it is deleted is decided by its owners alone.
        h.api.put(
            child,
            json!({"kind": kind, "metadata": {"name": name, "namespace": "ns",
                   "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
                   "ownerReferences": owners}, "spec": {}}),
        );
        h.reconcile().await.unwrap();
        let delete = format!("DELETE {child}");
        assert_eq!(
            h.api.writes().contains(&delete),
            deleted,
            "{child} owned by {owners}: {:?}",
            h.api.writes()
        );
        assert_eq!(
            h.api.get(child).is_none(),
            deleted,
            "{child} owned by {owners}"
        );
        let event = ("Deleted".to_string(), format!("Deleted {kind}/{name}"));
        assert_eq!(h.api.events().contains(&event), deleted);
    }
}

#[tokio::test]
async fn a_missing_secret_is_reported_in_status_and_builds_nothing() {
    let h = Harness::new(json!({"image": "multivac:1",
        "redis": {"external": {"secretRef": {"name": "my-redis"}}}}));
    // The scaler already wrote its fields; the reconciler's patch leaves them alone.
    h.api.edit(MV, |mv| {
        mv["status"] = json!({"workers": {"current": 2, "desired": 2},
            "conditions": [{"type": "Degraded", "status": "False", "reason": "BacklogRead",
                            "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
    });

    let err = h.reconcile().await.unwrap_err();
    assert!(matches!(err, Error::MissingSecret { .. }), "{err}");
    assert_eq!(
        h.api.writes(),
        [patch(&format!("{MV}/status"))],
        "no child is written"
    );
    let sent = h.status_sent();
    let ready = condition(&sent, "Ready");
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("False"), &json!("MissingSecret"))
    );
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains("\"my-redis\"") && message.contains("redis-url"),
        "{message}"
    );
    assert_eq!(condition(&sent, "Progressing")["status"], "False");
    assert!(
        sent["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["type"] != "Degraded"),
        "the scaler's condition is not sent: {sent}"
    );
    assert!(
        sent.get("workers").is_none(),
        "the scaler's fields are not sent: {sent}"
    );
    let stored = h.api.get(MV).unwrap();
    assert_eq!(stored["status"]["workers"]["current"], 2);
    assert_eq!(
        condition(&stored["status"], "Degraded")["reason"],
        "BacklogRead"
    );
    assert_eq!(
        h.metric("multivac_operator_reconcile_errors_total{error=\"missing_secret\"}"),
        1.0
    );
    assert_eq!(h.api.events().last().unwrap().0, "ReconcileFailed");
    // Not watched, so re-checked on a timer.
    assert_eq!(
        h.error_policy(&err),
        Action::requeue(Duration::from_secs(30))
    );

    // The same error again: the status already says it, so nothing is written.
    h.api.clear();
    h.reconcile().await.unwrap_err();
    assert_eq!(h.api.writes(), Vec::<String>::new());

    // The user creates the Secret: the next reconcile builds the MultiVac.
    h.api.put(
        "/api/v1/namespaces/ns/secrets/my-redis",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "my-redis"},
               "data": {"redis-url": "cmVkaXM6Ly9y"}}),
    );
    h.reconcile().await.unwrap();
    assert!(h.api.get(SERVER).is_some());
    assert_eq!(
        condition(&h.status_sent(), "Ready")["reason"],
        "ComponentsNotAvailable"
    );
}

#[tokio::test]
async fn no_new_passwords_while_their_data_exists() {
    let h = Harness::new(json!({"image": "multivac:1"}));
    h.reconcile().await.unwrap();
    let backup = h.api.remove(CREDENTIALS).expect("the credentials Secret");

    h.api.clear();
    let err = h.reconcile().await.unwrap_err();
    assert!(matches!(err, Error::CredentialsMissing { .. }), "{err}");
    assert_eq!(
        h.api.writes(),
        [patch(&format!("{MV}/status"))],
        "no new Secret, no child written"
    );
    let ready = condition(&h.status_sent(), "Ready").clone();
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("False"), &json!("CredentialsMissing"))
    );
    let message = ready["message"].as_str().unwrap();
    for needle in [
        "ns/mv-credentials",
        "mv-redis-data",
        "mv-mongodb-data",
        "backup",
    ] {
        assert!(message.contains(needle), "{needle:?} in {message}");
    }
    assert_eq!(
        h.metric("multivac_operator_reconcile_errors_total{error=\"credentials_missing\"}"),
        1.0
    );
    assert_eq!(
        h.error_policy(&err),
        Action::requeue(Duration::from_secs(30)),
        "Secrets are not watched: re-checked on a timer"
    );

    // Restored from the backup: used as it is.
    h.api.put(CREDENTIALS, backup.clone());
    h.api.clear();
    h.reconcile().await.unwrap();
    assert!(!h.api.writes().iter().any(|w| w.contains("/secrets")));
    assert_eq!(h.api.get(CREDENTIALS).unwrap()["data"], backup["data"]);

    // The data deleted on purpose: new passwords for empty stores.
    h.api.remove(CREDENTIALS);
    for volume in VOLUMES {
        h.api.remove(volume);
    }
    h.api.clear();
    h.reconcile().await.unwrap();
    assert_eq!(h.api.writes()[0], format!("POST {SECRETS}"));
    assert_ne!(h.api.get(CREDENTIALS).unwrap()["data"], backup["data"]);
}

#[tokio::test]
async fn a_changed_api_token_rolls_the_server_and_is_read_every_minute() {
    const TOKEN: &str = "/api/v1/namespaces/ns/secrets/tok";
    let h = Harness::new(json!({"image": "multivac:1", "apiTokenSecretRef": {"name": "tok"}}));
    h.api.put(
        TOKEN,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tok"},
               "data": {"token": b64("first-token")}}),
    );
    assert_eq!(
        h.reconcile().await.unwrap(),
        Action::requeue(Duration::from_secs(60)),
        "the token Secret is re-read within a minute"
    );
    let (server, worker) = (secrets_hash(&h.api, SERVER), secrets_hash(&h.api, WORKER));
    h.api.clear();
    h.reconcile().await.unwrap();
    assert!(
        h.api.writes().is_empty(),
        "unchanged token: {:?}",
        h.api.writes()
    );

    h.api
        .edit(TOKEN, |s| s["data"]["token"] = b64("second-token"));
    h.api.clear();
    h.reconcile().await.unwrap();
    assert!(
        h.api.writes().contains(&patch(SERVER)),
        "{:?}",
        h.api.writes()
    );
    assert!(
        !h.api.writes().contains(&patch(WORKER)),
        "workers do not use the token"
    );
    assert_ne!(secrets_hash(&h.api, SERVER), server);
    assert_eq!(secrets_hash(&h.api, WORKER), worker);
    let sent = serde_json::to_string(&h.api.requests().iter().map(|r| &r.body).collect::<Vec<_>>())
        .unwrap();
    for secret in ["second-token", b64("second-token").as_str().unwrap()] {
        assert!(!sent.contains(secret), "the token itself is never sent");
    }
}

#[tokio::test]
async fn a_rotation_prepares_then_waits_for_unreachable_stores_without_failing() {
    // Nothing listens on port 1: the stores refuse at once.
    let h = Harness::new(json!({"image": "multivac:1"}));
    h.reconcile().await.unwrap();
    h.roll_out();
    h.app_user_exists();
    h.reconcile().await.unwrap();
    let before = h.api.get(CREDENTIALS).unwrap();
    h.api.edit(MV, |mv| {
        mv["metadata"]["annotations"] = json!({"multivac.io/rotate-credentials": "2026-05-01"});
    });

    // Step 1: the new passwords go into the Secret, conditioned on its version.
    h.api.clear();
    assert_eq!(
        h.reconcile().await.unwrap(),
        Action::requeue(Duration::from_secs(5))
    );
    let secret_patch = h
        .api
        .requests()
        .into_iter()
        .find(|r| r.method == Method::PATCH && r.path == CREDENTIALS)
        .expect("a patch of the credentials Secret");
    assert!(secret_patch.merge);
    assert_eq!(
        secret_patch.body.unwrap()["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
    let prepared = h.api.get(CREDENTIALS).unwrap();
    assert_eq!(
        prepared["metadata"]["annotations"],
        json!({"multivac.io/owner": "ns/mv", "multivac.io/rotating": "2026-05-01", "multivac.io/rotation-phase": "Prepared"})
    );
    for key in [
        "redis-password-next",
        "mongodb-password-next",
        "mongodb-app-password-next",
    ] {
        assert!(prepared["data"].get(key).is_some(), "{key}");
    }
    assert_eq!(
        prepared["data"]["redis-url"], before["data"]["redis-url"],
        "not switched yet"
    );
    let progressing = condition(&h.status_sent(), "Progressing").clone();
    assert_eq!(
        (&progressing["status"], &progressing["reason"]),
        (&json!("True"), &json!("RotatingCredentials"))
    );
    assert_eq!(condition(&h.status_sent(), "Ready")["status"], "True");

    // Step 2 cannot reach Redis: reported, retried, the Secret unchanged.
    h.api.clear();
    assert_eq!(
        h.reconcile().await.unwrap(),
        Action::requeue(Duration::from_secs(15))
    );
    assert!(!h.api.writes().contains(&patch(CREDENTIALS)));
    assert_eq!(h.api.get(CREDENTIALS).unwrap()["data"], prepared["data"]);
    let (reason, note) = h.api.events().last().unwrap().clone();
    assert_eq!(reason, "CredentialsRotationBlocked");
    assert!(note.contains("cannot reach Redis at 127.0.0.1:1"), "{note}");
    let message = condition(&h.status_sent(), "Progressing")["message"].clone();
    assert!(message.as_str().unwrap().contains("blocked"), "{message}");
    // No password in an event, a status or a log-visible body.
    let shown = format!("{:?} {}", h.api.events(), h.status_sent());
    for (key, value) in prepared["data"].as_object().unwrap() {
        let bytes: k8s_openapi::ByteString = serde_json::from_value(value.clone()).unwrap();
        let text = String::from_utf8(bytes.0).unwrap();
        if key.contains("password") {
            assert!(!shown.contains(&text), "{key} shown");
        }
    }
}

#[tokio::test]
async fn a_fenced_operator_does_not_touch_the_stores() {
    // A leader whose Lease was never (or no longer) renewed: closed fence.
    let fence = crate::fence::Fence::leased("op", "lease", "me", Duration::from_secs(10));
    let h = Harness::with_context(json!({"image": "multivac:1"}), |ctx| ctx.with_fence(fence));
    h.reconcile().await.unwrap();
    h.api.edit(MV, |mv| {
        mv["metadata"]["annotations"] = json!({"multivac.io/rotate-credentials": "1"});
    });
    h.reconcile().await.unwrap();
    h.api.clear();
    h.reconcile().await.unwrap();
    let (reason, note) = h.api.events().last().unwrap().clone();
    assert_eq!(reason, "CredentialsRotationBlocked");
    assert!(
        note.contains("refused connecting to Redis") && note.contains("never"),
        "the fence, not the network, stopped it: {note}"
    );
    // Nor does it make the app's MongoDB user.
    h.roll_out();
    h.reconcile().await.unwrap();
    let ready = condition(&h.status_sent(), "Ready").clone();
    assert_eq!(ready["reason"], "WaitingForMongoDBUser");
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains("refused connecting to MongoDB") && message.contains("never"),
        "{message}"
    );
}

#[tokio::test]
async fn ready_waits_for_the_apps_mongodb_user() {
    let h = Harness::new(json!({"image": "multivac:1"}));
    h.reconcile().await.unwrap();
    assert_eq!(credential(&h.api, "mongodb-app-username"), "multivac-a");

    // Every pod up, but the MongoDB on port 1 refuses: not Ready, and says why.
    h.roll_out();
    h.api.clear();
    assert_eq!(
        h.reconcile().await.unwrap(),
        Action::requeue(Duration::from_secs(10))
    );
    let status = h.status_sent();
    let (ready, progressing) = (
        condition(&status, "Ready").clone(),
        condition(&status, "Progressing").clone(),
    );
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("False"), &json!("WaitingForMongoDBUser"))
    );
    assert_eq!(
        (&progressing["status"], &progressing["reason"]),
        (&json!("True"), &json!("WaitingForMongoDBUser"))
    );
    let message = ready["message"].as_str().unwrap();
    for needle in [
        "the app's MongoDB user multivac-a does not exist yet",
        "cannot reach MongoDB at 127.0.0.1:1: Connection refused",
        "retrying every 10s",
        "GET /multivac answers 503",
    ] {
        assert!(message.contains(needle), "{needle:?} in {message}");
    }
    for key in ["mongodb-password", "mongodb-app-password"] {
        let password = credential(&h.api, key);
        assert!(
            !status.to_string().contains(&password),
            "{key} in the status"
        );
    }
    // Still refused: the status already says so, nothing is written.
    h.api.clear();
    h.reconcile().await.unwrap();
    assert_eq!(h.api.writes(), Vec::<String>::new());

    // MongoDB's pod is gone: its rollout is what Ready waits for, and
    // MongoDB is not asked.
    h.api.edit(&format!("{DEPLOYMENTS}mv-mongodb"), |d| {
        d["status"]["availableReplicas"] = json!(0);
    });
    h.reconcile().await.unwrap();
    let ready = condition(&h.status_sent(), "Ready").clone();
    assert_eq!(ready["reason"], "ComponentsNotAvailable");
    assert_eq!(
        ready["message"],
        "waiting for Deployments: mv-mongodb (0/1 available)"
    );

    // A Secret from before app users: the app is MongoDB's root user, which
    // the image's first start creates; nothing to wait for.
    h.roll_out();
    h.api.edit(CREDENTIALS, |s| {
        let data = s["data"].as_object_mut().unwrap();
        data.remove("mongodb-app-username");
        data.remove("mongodb-app-password");
    });
    h.reconcile().await.unwrap();
    assert_eq!(condition(&h.status_sent(), "Ready")["status"], "True");
}

#[tokio::test]
async fn a_multivac_without_an_image_runs_the_operators_default() {
    let h = Harness::with_default_image(json!({}), Some("registry.example/multivac:v9"));
    h.reconcile().await.unwrap();
    for d in ["mv-server", "mv-worker"] {
        let deployment = h.api.get(&format!("{DEPLOYMENTS}{d}")).unwrap();
        assert_eq!(
            deployment["spec"]["template"]["spec"]["containers"][0]["image"],
            "registry.example/multivac:v9",
            "{d}"
        );
    }
}

#[tokio::test]
async fn a_multivac_without_an_image_and_an_operator_without_a_default_is_not_ready() {
    let h = Harness::new(json!({}));
    let err = h.reconcile().await.unwrap_err();
    assert!(matches!(err, Error::NoAppImage), "{err}");
    assert_eq!(
        h.api.writes(),
        [patch(&format!("{MV}/status"))],
        "no child is written"
    );
    let sent = h.status_sent();
    let ready = condition(&sent, "Ready");
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("False"), &json!("NoAppImage"))
    );
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("set spec.image"),
        "{ready}"
    );
    assert_eq!(
        h.metric("multivac_operator_reconcile_errors_total{error=\"no_app_image\"}"),
        1.0
    );
    // Waits for the user: no fast retry.
    assert_eq!(
        h.error_policy(&err),
        Action::requeue(Duration::from_secs(300))
    );
    // The user names an image: the next reconcile builds it.
    h.api
        .edit(MV, |mv| mv["spec"]["image"] = json!("multivac:1"));
    h.reconcile().await.unwrap();
    assert!(h.api.get(SERVER).is_some());
}

#[tokio::test]
async fn an_ingress_is_applied_when_asked_and_deleted_when_not() {
    let h = Harness::new(json!({"image": "multivac:1",
        "server": {"ingress": {"host": "mv.example.com"}}}));
    h.reconcile().await.unwrap();
    assert!(
        h.api.writes().contains(&patch(INGRESS)),
        "{:?}",
        h.api.writes()
    );
    let ingress = h.api.get(INGRESS).unwrap();
    assert_eq!(ingress["spec"]["rules"][0]["host"], "mv.example.com");
    assert_eq!(ingress["metadata"]["ownerReferences"], owned_by("mv-uid"));
    h.api.edit(MV, |mv| mv["spec"]["server"] = json!({}));
    h.reconcile().await.unwrap();
    assert!(h.api.get(INGRESS).is_none());
    assert!(
        h.api
            .events()
            .contains(&("Deleted".into(), "Deleted Ingress/mv-server".into()))
    );
}

#[tokio::test]
async fn quantities_the_api_server_rewrites_are_not_drift() {
    let h = Harness::new(json!({"image": "multivac:1",
        "server": {"resources": {"requests": {"cpu": "0.5", "memory": "1024Mi"},
                                 "limits": {"memory": "1.5Gi"}}},
        "redis": {"managed": {"storage": {"size": "2048Mi"}}}}));
    h.reconcile().await.unwrap();
    h.roll_out();
    h.reconcile().await.unwrap();
    // The API server stores them in canonical form.
    h.api.edit(SERVER, |d| {
        d["spec"]["template"]["spec"]["containers"][0]["resources"] = json!({
            "requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1536Mi"}});
    });
    let pvc = "/api/v1/namespaces/ns/persistentvolumeclaims/mv-redis-data";
    h.api.edit(pvc, |p| {
        p["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
    });
    h.api.clear();
    h.reconcile().await.unwrap();
    assert_eq!(h.api.writes(), Vec::<String>::new());
    assert!(h.api.events().is_empty(), "{:?}", h.api.events());

    // A different amount is drift, repaired with one write.
    h.api.edit(SERVER, |d| {
        d["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] =
            json!("501m");
    });
    h.reconcile().await.unwrap();
    assert_eq!(h.api.writes()[0], patch(SERVER));
}

#[test]
fn a_change_note_names_every_child_it_can_hold_and_counts_the_rest() {
    use super::change_note;
    let few = [
        "Deployment/mv-server".to_string(),
        "Service/mv-server".into(),
    ];
    assert_eq!(
        change_note("Updated", &few),
        "Updated Deployment/mv-server, Service/mv-server"
    );
    // 14 children of a MultiVac with a 63-character name: over 1 KB.
    let long = "m".repeat(63);
    let many: Vec<String> = (0..14)
        .map(|i| format!("PersistentVolumeClaim/{long}-{i:02}"))
        .collect();
    let note = change_note("Created", &many);
    assert!(note.len() <= 1024, "{} bytes", note.len());
    let named = many.iter().filter(|c| note.contains(c.as_str())).count();
    assert!(named >= 10, "{note}");
    assert!(
        note.ends_with(&format!(" and {} more", 14 - named)),
        "{note}"
    );
}
