//! The reconciler against the in-memory API server ([`crate::fake_api`]):
//! the requests it sends and what it makes of the answers, including the
//! errors a real API server rarely produces on demand.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::controller::Action;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use super::cluster::Object;
use super::{error_policy, reconcile};
use crate::cache::{Caches, slim};
use crate::context::Context;
use crate::crd::MultiVac;
use crate::error::Error;
use crate::fake_api::FakeApi;

const MV: &str = "/apis/multivac.io/v1alpha1/namespaces/ns/multivacs/mv";
const SECRETS: &str = "/api/v1/namespaces/ns/secrets";
const CREDENTIALS: &str = "/api/v1/namespaces/ns/secrets/mv-credentials";
const SERVER: &str = "/apis/apps/v1/namespaces/ns/deployments/mv-server";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/ns/deployments/";
const PDB: &str = "/apis/policy/v1/namespaces/ns/poddisruptionbudgets/mv-server";

/// Every child of the minimal MultiVac, in the order they are applied.
const CHILDREN: [&str; 13] = [
    "/api/v1/namespaces/ns/serviceaccounts/mv",
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
        let (client, api) = FakeApi::start();
        api.put(
            MV,
            json!({"apiVersion": "multivac.io/v1alpha1", "kind": "MultiVac",
                   "metadata": {"name": "mv", "namespace": "ns", "uid": "mv-uid"}, "spec": spec}),
        );
        let registry = Arc::new(Mutex::new(Registry::default()));
        let ctx = Arc::new(Context::new(
            client,
            registry.clone(),
            "multivac-system".into(),
        ));
        Self { api, ctx, registry }
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
    /// watched) from the fake, slimmed like the watches slim them.
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
        self.ctx.set_caches(caches);
    }

    fn cache<K: Object>(&self, caches: &mut Caches, prefix: &str) {
        let (store, mut writer) = reflector::store::<K>();
        writer.apply_watcher_event(&Event::Init);
        for path in self.api.paths(prefix) {
            let mut object = self.api.get(&path).unwrap();
            object["metadata"]["namespace"] = json!("ns");
            let mut object: K = serde_json::from_value(object).unwrap();
            slim(&mut object);
            writer.apply_watcher_event(&Event::InitApply(object));
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

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

fn patch(path: &str) -> String {
    format!("PATCH {path}")
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
    let created: Vec<String> = h.api.events().into_iter().map(|(_, note)| note).collect();
    assert_eq!(created.len(), 14, "{created:?}");
    assert_eq!(created[0], "Created Secret/mv-credentials");
    assert_eq!(created[3], "Created Deployment/mv-server");
    let status = h.status_sent();
    assert_eq!(
        condition(&status, "Ready")["reason"],
        "ComponentsNotAvailable"
    );

    // The pods come up: one status write says so.
    h.roll_out();
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
        "metadata": {"name": "mv-credentials", "namespace": "ns"},
        "stringData": {"redis-password": "the-winners", "mongodb-password": "the-winners"}});
    h.api
        .lose_race(Method::POST, SECRETS, 409, CREDENTIALS, winner.clone());

    h.reconcile().await.unwrap();
    let stored = h.api.get(CREDENTIALS).unwrap();
    assert_eq!(
        stored["stringData"], winner["stringData"],
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
}

#[tokio::test]
async fn a_refused_child_fails_the_reconcile_and_backs_off() {
    let h = Harness::new(json!({"image": "multivac:1"}));
    h.api.fail(Method::PATCH, SERVER, 422, "Invalid");

    let err = h.reconcile().await.unwrap_err();
    assert!(
        matches!(&err, Error::Kube(kube::Error::Api(s)) if s.code == 422),
        "{err}"
    );
    assert_eq!(
        h.metric("multivac_operator_reconcile_errors_total{error=\"kube\"}"),
        1.0
    );
    assert_eq!(
        h.metric("multivac_operator_reconciliations_total{result=\"error\"}"),
        1.0
    );
    let events = h.api.events();
    let (reason, note) = events.last().unwrap();
    assert_eq!(reason, "ReconcileFailed");
    assert!(note.contains("422") || note.contains("Invalid"), "{note}");
    assert!(
        events.contains(&("Created".into(), "Created ConfigMap/mv-config".into())),
        "what was applied before the refusal is reported: {events:?}"
    );
    // Transient: 1 s, then 2 s, 4 s ...
    assert_eq!(
        h.error_policy(&err),
        Action::requeue(Duration::from_secs(1))
    );
    assert_eq!(
        h.error_policy(&err),
        Action::requeue(Duration::from_secs(2))
    );
    assert_eq!(
        h.error_policy(&err),
        Action::requeue(Duration::from_secs(4))
    );
    // A success resets the backoff.
    h.reconcile().await.unwrap();
    assert!(h.api.get(SERVER).is_some());
    assert_eq!(
        h.error_policy(&err),
        Action::requeue(Duration::from_secs(1))
    );
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
    ];
    for (spec, child, owners, deleted) in cases {
        let h = Harness::new(spec);
        h.api.put(
            "/api/v1/namespaces/ns/secrets/r",
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "r"},
                   "stringData": {"redis-url": "redis://r"}}),
        );
        let kind = if child == PDB {
            "PodDisruptionBudget"
        } else {
            "Deployment"
        };
        let name = child.rsplit('/').next().unwrap();
        h.api.put(
            child,
            json!({"kind": kind, "metadata": {"name": name, "namespace": "ns",
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
