//! The operator against the real local control plane: each test gets its own
//! namespace and its own operator process watching only that namespace.

mod common;

use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::runtime::wait::await_condition;
use kube::{Client, ResourceExt};
use multivac_operator::MultiVac;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// The default app image the test operators get, as the chart gives its own.
const DEFAULT_APP_IMAGE: &str = "registry.example/multivac:test";
const HOW: &str = "start the control plane: `bash hack/cluster.sh up` then `eval $(bash hack/cluster.sh env)`, or run `make test`";
// Generous: the machine running the suite may be busy (parallel tests, builds).
const WAIT: Duration = Duration::from_secs(180);

async fn client() -> Client {
    if std::env::var_os("KUBECONFIG").is_none() {
        panic!("KUBECONFIG is not set: {HOW}");
    }
    let client = Client::try_default()
        .await
        .unwrap_or_else(|e| panic!("no client ({e}): {HOW}"));
    client
        .apiserver_version()
        .await
        .unwrap_or_else(|e| panic!("API server unreachable ({e}): {HOW}"));
    client
}

/// Installs the CRD (idempotent server-side apply) and waits until it is served.
async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "multivacs.multivac.io",
        &PatchParams::apply("multivac-tests").force(),
        &Patch::Apply(multivac_operator::custom_resource_definition()),
    )
    .await
    .expect("install the CRD");
    wait_for("CRD established", || async {
        let crd = crds.get("multivacs.multivac.io").await.ok()?;
        crd.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
            .then_some(())
    })
    .await;
}

/// A fresh namespace (optionally enforcing a Pod Security level).
async fn namespace(client: &Client, prefix: &str, enforce: Option<&str>) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!("{prefix}-{}-{nanos}", std::process::id());
    let mut labels = json!({});
    if let Some(level) = enforce {
        labels["pod-security.kubernetes.io/enforce"] = json!(level);
    }
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    name
}

/// The operator binary, watching `ns` only, killed when dropped.
struct Operator {
    child: Child,
    metrics: String,
    _mongodb: Vec<common::ManagedMongoDb>,
}

/// The names of the tests' MultiVacs with a managed MongoDB.
const MULTIVACS: [&str; 3] = ["multivac", "default", "legacy"];

impl Operator {
    /// Started with a FerretDB for the managed MongoDB of each of
    /// [`MULTIVACS`] in `ns`, where it makes the app's user.
    async fn start(ns: &str) -> Self {
        let client = client().await;
        let mongodb: Vec<_> = MULTIVACS
            .iter()
            .map(|name| common::ManagedMongoDb::new(&client, ns, name))
            .collect();
        let addresses: Vec<String> = mongodb.iter().map(|m| m.store_address()).collect();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log =
            std::fs::File::create(std::env::temp_dir().join(format!("multivac-operator-{ns}.log")))
                .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_multivac-operator"))
            .args([
                "--leader-election=false",
                "--watch-namespace",
                ns,
                "--metrics-bind",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .env("POD_NAMESPACE", "multivac-system")
            .env("MULTIVAC_OPERATOR_STORE_ADDRESSES", addresses.join(","))
            // What the chart gives it: the sample names no image.
            .env("MULTIVAC_OPERATOR_DEFAULT_APP_IMAGE", DEFAULT_APP_IMAGE)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn multivac-operator");
        Self {
            child,
            metrics: format!("http://127.0.0.1:{port}/metrics"),
            _mongodb: mongodb,
        }
    }

    /// Sum of a counter family from /metrics (plain HTTP over a TcpStream: no client crate needed).
    /// The scaler's writes (`kind="scaler:..."`) are not the reconciler's and are left out.
    async fn counter(&self, name: &str) -> f64 {
        let body = http_get(&self.metrics).await;
        body.lines()
            .filter(|l| l.starts_with(name) && !l.contains("scaler:"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn http_get(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = tokio::net::TcpStream::connect(host)
        .await
        .expect("connect to operator metrics");
    s.write_all(format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {WAIT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Server-side applies `config/samples/multivac.yaml` into `ns`, as a user would.
async fn apply_sample(client: &Client, ns: &str) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/samples/multivac.yaml"
    );
    let text = std::fs::read_to_string(path).expect("read config/samples/multivac.yaml");
    let sample: Value = serde_saphyr::from_str(&text).expect("the sample is YAML");
    let name = sample["metadata"]["name"]
        .as_str()
        .expect("the sample's name");
    Api::<MultiVac>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::apply("multivac-tests"),
            &Patch::Apply(&sample),
        )
        .await
        .unwrap_or_else(|e| panic!("server-side apply of the minimal sample failed: {e}"));
}

/// Waits for the two PVCs of MultiVac `name` (managed Redis and MongoDB) to be
/// bound by the cluster's volume provisioner, then for its condition Ready.
async fn wait_ready(client: &Client, ns: &str, name: &str) {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let of_name = ListParams::default().labels(&format!("app.kubernetes.io/instance={name}"));
    wait_for(
        "the two PVCs to be Bound by the default StorageClass' provisioner (`bash hack/cluster.sh status`)",
        || async {
            let items = pvcs.list(&of_name).await.ok()?.items;
            let bound = |p: &PersistentVolumeClaim| {
                p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
            };
            (items.len() == 2 && items.iter().all(bound)).then_some(())
        },
    )
    .await;
    let mvs: Api<MultiVac> = Api::namespaced(client.clone(), ns);
    let ready = |mv: Option<&MultiVac>| {
        mv.and_then(|mv| mv.status.as_ref()).is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
    };
    tokio::time::timeout(WAIT, await_condition(mvs.clone(), name, ready))
        .await
        .unwrap_or_else(|_| panic!("MultiVac {ns}/{name} did not become Ready within {WAIT:?}"))
        .unwrap_or_else(|e| panic!("watching MultiVac {ns}/{name} failed: {e}"));
}

async fn cleanup(client: &Client, ns: &str) {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(ns, &DeleteParams::default())
        .await;
}

fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| match k.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[k],
    })
}

async fn json_of<
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
>(
    client: &Client,
    ns: &str,
    name: &str,
) -> Value {
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    serde_json::to_value(
        api.get(name)
            .await
            .unwrap_or_else(|e| panic!("get {name}: {e}")),
    )
    .unwrap()
}

/// Creates MultiVac `name` in `ns` with `spec`.
async fn create_multivac(client: &Client, ns: &str, name: &str, spec: Value) {
    let mv: MultiVac = serde_json::from_value(json!({
        "apiVersion": "multivac.io/v1alpha1", "kind": "MultiVac",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap();
    Api::<MultiVac>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &mv)
        .await
        .unwrap_or_else(|e| panic!("create MultiVac {ns}/{name}: {e}"));
}

/// `kind/name -> uid` of the PVCs and the credentials Secret of MultiVac `name`.
async fn retained_uids(client: &Client, ns: &str, name: &str) -> BTreeMap<String, String> {
    let mut uids = BTreeMap::new();
    for child in [format!("{name}-redis-data"), format!("{name}-mongodb-data")] {
        if let Some(p) = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
            .get_opt(&child)
            .await
            .unwrap()
        {
            uids.insert(format!("PersistentVolumeClaim/{child}"), p.uid().unwrap());
        }
    }
    let secret = format!("{name}-credentials");
    if let Some(s) = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(&secret)
        .await
        .unwrap()
    {
        uids.insert(format!("Secret/{secret}"), s.uid().unwrap());
    }
    uids
}

/// The owners of the PVCs and the credentials Secret of MultiVac `name`.
async fn retained_owners(client: &Client, ns: &str, name: &str) -> Vec<Value> {
    let mut owners = vec![];
    for child in [format!("{name}-redis-data"), format!("{name}-mongodb-data")] {
        let p = json_of::<PersistentVolumeClaim>(client, ns, &child).await;
        owners.push(p["metadata"]["ownerReferences"].clone());
    }
    let s = json_of::<Secret>(client, ns, &format!("{name}-credentials")).await;
    owners.push(s["metadata"]["ownerReferences"].clone());
    owners
}

/// Waits for condition Ready=False with `reason` on MultiVac `name`; its message.
async fn wait_not_ready(
    client: &Client,
    ns: &str,
    name: &str,
    reason: &str,
    needle: &str,
) -> String {
    let mvs: Api<MultiVac> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("Ready=False {reason} saying {needle:?}"),
        || async {
            let c = mvs
                .get(name)
                .await
                .ok()?
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            (c.status == "False" && c.reason == reason && c.message.contains(needle))
                .then_some(c.message)
        },
    )
    .await
}

/// The notes of the Warning events with `reason` about MultiVac `name`.
async fn warnings(client: &Client, ns: &str, name: &str, reason: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .filter_map(|e| e.note)
        .collect()
}

/// Every named child of MultiVac `name` except `but` exists.
async fn children_exist_but(client: &Client, ns: &str, name: &str, but: &[&str]) {
    let resources = [
        (ApiResource::erase::<Deployment>(&()), "server"),
        (ApiResource::erase::<Deployment>(&()), "worker"),
        (ApiResource::erase::<Deployment>(&()), "redis"),
        (ApiResource::erase::<Deployment>(&()), "mongodb"),
        (ApiResource::erase::<Service>(&()), "server"),
        (ApiResource::erase::<Service>(&()), "redis"),
        (ApiResource::erase::<Service>(&()), "mongodb"),
        (
            ApiResource::erase::<PersistentVolumeClaim>(&()),
            "redis-data",
        ),
        (
            ApiResource::erase::<PersistentVolumeClaim>(&()),
            "mongodb-data",
        ),
        (ApiResource::erase::<Secret>(&()), "credentials"),
        (ApiResource::erase::<ConfigMap>(&()), "config"),
        (ApiResource::erase::<ServiceAccount>(&()), "multivac"),
        (ApiResource::erase::<NetworkPolicy>(&()), "redis"),
        (ApiResource::erase::<NetworkPolicy>(&()), "mongodb"),
    ];
    for (resource, suffix) in resources {
        let child = format!("{}/{name}-{suffix}", resource.kind);
        if but.contains(&child.as_str()) {
            continue;
        }
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &resource);
        let object_name = format!("{name}-{suffix}");
        wait_for(&format!("{child} to exist"), || async {
            api.get_opt(&object_name).await.ok()?.map(|_| ())
        })
        .await;
    }
}

#[tokio::test]
async fn minimal_sample_builds_everything_and_becomes_ready_with_no_idle_writes() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "mv-sample", None).await;
    let op = Operator::start(&ns).await;
    apply_sample(&client, &ns).await;
    wait_ready(&client, &ns, "multivac").await;

    let mv = json_of::<MultiVac>(&client, &ns, "multivac").await;
    let uid = mv["metadata"]["uid"].clone();
    assert_eq!(
        get(&mv, "spec.workers.maxReplicas"),
        10,
        "schema defaults applied"
    );
    assert_eq!(
        get(&mv, "status.serviceUrl"),
        &json!(format!("http://multivac-server.{ns}.svc"))
    );
    assert_eq!(get(&mv, "status.observedGeneration"), 1);

    for (kind, name) in [
        ("Deployment", "multivac-server"),
        ("Deployment", "multivac-worker"),
        ("Deployment", "multivac-redis"),
        ("Deployment", "multivac-mongodb"),
        ("Service", "multivac-server"),
        ("Service", "multivac-redis"),
        ("Service", "multivac-mongodb"),
        ("PersistentVolumeClaim", "multivac-redis-data"),
        ("PersistentVolumeClaim", "multivac-mongodb-data"),
        ("Secret", "multivac-credentials"),
        ("ConfigMap", "multivac-config"),
        ("ServiceAccount", "multivac-multivac"),
        ("NetworkPolicy", "multivac-redis"),
        ("NetworkPolicy", "multivac-mongodb"),
    ] {
        let obj = match kind {
            "Deployment" => json_of::<Deployment>(&client, &ns, name).await,
            "Service" => json_of::<Service>(&client, &ns, name).await,
            "PersistentVolumeClaim" => json_of::<PersistentVolumeClaim>(&client, &ns, name).await,
            "Secret" => json_of::<Secret>(&client, &ns, name).await,
            "ConfigMap" => json_of::<ConfigMap>(&client, &ns, name).await,
            "ServiceAccount" => json_of::<ServiceAccount>(&client, &ns, name).await,
            _ => json_of::<NetworkPolicy>(&client, &ns, name).await,
        };
        if matches!(kind, "PersistentVolumeClaim" | "Secret") {
            // `retention: Retain` (the default): the data outlives the MultiVac.
            assert!(
                obj["metadata"]["ownerReferences"].is_null(),
                "{kind}/{name} must carry no ownerReference: {}",
                obj["metadata"]
            );
            assert_eq!(
                obj["metadata"]["annotations"]["multivac.io/owner"],
                json!(format!("{ns}/multivac")),
                "{kind}/{name}"
            );
        } else {
            assert_eq!(
                get(&obj, "metadata.ownerReferences.0.uid"),
                &uid,
                "{kind}/{name} owned by the MultiVac"
            );
            assert_eq!(get(&obj, "metadata.ownerReferences.0.controller"), true);
        }
        assert_eq!(
            obj["metadata"]["labels"]["app.kubernetes.io/managed-by"], "multivac-operator",
            "{kind}/{name}"
        );
        assert_eq!(
            obj["metadata"]["labels"]["app.kubernetes.io/instance"], "multivac",
            "{kind}/{name}"
        );
    }

    let server = json_of::<Deployment>(&client, &ns, "multivac-server").await;
    let pod = get(&server, "spec.template.spec");
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(get(pod, "securityContext.runAsNonRoot"), true);
    assert_eq!(
        get(pod, "containers.0.securityContext.readOnlyRootFilesystem"),
        true
    );
    assert_eq!(
        get(pod, "containers.0.securityContext.capabilities.drop"),
        &json!(["ALL"])
    );
    // The sample names no image: the operator's default.
    assert_eq!(get(pod, "containers.0.image"), DEFAULT_APP_IMAGE);
    // The API port only in the Service; /metrics and /zzz on the pods' internal port.
    assert_eq!(
        get(pod, "containers.0.ports"),
        &json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}])
    );
    let service = json_of::<Service>(&client, &ns, "multivac-server").await;
    assert_eq!(
        get(&service, "spec.ports"),
        &json!([{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}])
    );
    assert_eq!(
        get(pod, "containers.0.readinessProbe.httpGet.path"),
        "/readyz"
    );
    let worker = json_of::<Deployment>(&client, &ns, "multivac-worker").await;
    assert_eq!(
        get(&worker, "spec.template.spec.terminationGracePeriodSeconds"),
        60
    );
    let fields = worker["metadata"]["managedFields"].as_array().unwrap();
    assert!(
        !fields.iter().any(|f| f["manager"] == "multivac-operator"
            && f["fieldsV1"]["f:spec"].get("f:replicas").is_some()),
        "the reconciler must not own worker spec.replicas"
    );
    let redis = json_of::<Deployment>(&client, &ns, "multivac-redis").await;
    assert_eq!(get(&redis, "spec.strategy.type"), "Recreate");
    assert_eq!(
        get(&redis, "spec.template.spec.securityContext.runAsUser"),
        999
    );
    let secret = json_of::<Secret>(&client, &ns, "multivac-credentials").await;
    for key in [
        "redis-password",
        "redis-url",
        "mongodb-username",
        "mongodb-password",
        "mongodb-uri",
    ] {
        assert!(secret["data"].get(key).is_some(), "Secret key {key}");
    }
    // kwok runs the pods: all four Deployments have their pod available.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let running = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .count();
    assert!(running >= 4, "expected 4 running pods, got {running}");

    // Idle: a reconcile of the unchanged, Ready MultiVac writes nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes = op.counter("multivac_operator_api_writes_total").await;
    let reconciles = op.counter("multivac_operator_reconciliations_total").await;
    let mvs: Api<MultiVac> = Api::namespaced(client.clone(), &ns);
    mvs.patch(
        "multivac",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"poke": "1"}}})),
    )
    .await
    .unwrap();
    wait_for("a reconcile after the poke", || async {
        (op.counter("multivac_operator_reconciliations_total").await > reconciles).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        op.counter("multivac_operator_api_writes_total").await,
        writes,
        "no writes for an unchanged MultiVac"
    );
    // The generated Secret is never regenerated.
    let again = json_of::<Secret>(&client, &ns, "multivac-credentials").await;
    assert_eq!(again["data"], secret["data"]);
    cleanup(&client, &ns).await;
}

#[tokio::test]
async fn children_follow_spec_edits_and_are_restored() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "mv-edit", None).await;
    let _op = Operator::start(&ns).await;
    apply_sample(&client, &ns).await;
    wait_ready(&client, &ns, "multivac").await;
    let mvs: Api<MultiVac> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    let config: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);

    // Edit the spec: children follow.
    mvs.patch(
        "multivac",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {
            "image": "multivac:0.2.0",
            "server": {"replicas": 3},
            "answer": {"requiredConcepts": 7},
            "networkPolicy": {"enabled": false},
        }})),
    )
    .await
    .unwrap();
    wait_for("server Deployment to follow the spec", || async {
        let d = deployments.get("multivac-server").await.ok()?;
        let spec = d.spec;
        (spec.replicas == Some(3)
            && spec.template.spec?.containers[0].image.as_deref() == Some("multivac:0.2.0"))
        .then_some(())
    })
    .await;
    wait_for("PDB for 3 server replicas", || async {
        pdbs.get_opt("multivac-server").await.ok()?.map(|_| ())
    })
    .await;
    wait_for("NetworkPolicies removed", || async {
        (policies
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .is_empty())
        .then_some(())
    })
    .await;
    wait_for("ConfigMap to carry requiredConcepts", || async {
        let cm = config.get("multivac-config").await.ok()?;
        (cm.data?.get("MULTIVAC_REQUIRED_CONCEPTS")? == "7").then_some(())
    })
    .await;
    mvs.patch(
        "multivac",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"server": {"replicas": 1}}})),
    )
    .await
    .unwrap();
    wait_for("PDB removed at 1 replica", || async {
        pdbs.get_opt("multivac-server")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;

    // Delete children: each is restored.
    let deleted = [
        (ApiResource::erase::<Deployment>(&()), "multivac-redis"),
        (ApiResource::erase::<ConfigMap>(&()), "multivac-config"),
    ];
    for (resource, name) in &deleted {
        Api::<DynamicObject>::namespaced_with(client.clone(), &ns, resource)
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    for (resource, name) in &deleted {
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), &ns, resource);
        wait_for(
            &format!("deleted {}/{name} restored", resource.kind),
            || async { api.get_opt(name).await.ok()?.map(|_| ()) },
        )
        .await;
    }
    // Edit a field the operator owns, as another manager: reverted.
    deployments
        .patch(
            "multivac-worker",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"template": {"spec": {"terminationGracePeriodSeconds": 1}}}}),
            ),
        )
        .await
        .unwrap();
    wait_for("edited worker Deployment restored", || async {
        let d = deployments.get("multivac-worker").await.ok()?;
        (d.spec.template.spec?.termination_grace_period_seconds == Some(60)).then_some(())
    })
    .await;
    wait_ready(&client, &ns, "multivac").await;

    // Delete the MultiVac: the garbage collector removes every owned child.
    mvs.delete("multivac", &DeleteParams::default())
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    wait_for("children garbage-collected", || async {
        let lp = ListParams::default().labels("app.kubernetes.io/managed-by=multivac-operator");
        let left = deployments.list(&lp).await.ok()?.items.len()
            + services.list(&lp).await.ok()?.items.len()
            + config.list(&lp).await.ok()?.items.len();
        (left == 0).then_some(())
    })
    .await;
    // The data stays (retention: Retain).
    let retained = retained_uids(&client, &ns, "multivac").await;
    assert_eq!(
        retained.len(),
        3,
        "two PVCs and the credentials Secret: {retained:?}"
    );
    cleanup(&client, &ns).await;
}

#[tokio::test]
async fn invalid_specs_are_rejected_by_the_api_server() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "mv-invalid", None).await;
    let mvs: Api<MultiVac> = Api::namespaced(client.clone(), &ns);
    let name_55 = "a".repeat(55);
    let name_56 = "a".repeat(56);
    let quantity = "must be a quantity, e.g. 500m, 2 or 1Gi";
    let above = "resources.requests must not exceed resources.limits for the same resource";
    let valid = json!({"image": "x"});
    for (name, spec, message) in [
        (
            name_56.as_str(),
            valid.clone(),
            "metadata.name must be at most 55 characters",
        ),
        (
            "a.b",
            valid.clone(),
            "metadata.name must consist of lowercase letters, digits and '-'",
        ),
        (
            "1mv",
            valid.clone(),
            "metadata.name must consist of lowercase letters, digits and '-'",
        ),
        (
            "bad",
            json!({"image": "x", "redis": {"managed": {"storage": {"size": "lots"}}}}),
            &*format!("spec.redis.managed.storage.size: Invalid value: \"lots\": {quantity}"),
        ),
        (
            "bad",
            json!({"image": "x", "mongodb": {"managed": {"resources": {"limits": {"memory": "much"}}}}}),
            &*format!(
                "spec.mongodb.managed.resources.limits[memory]: Invalid value: \"much\": {quantity}"
            ),
        ),
        (
            "bad",
            json!({"image": "x", "server": {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}}),
            &*format!("spec.server.resources: Invalid value: {above}"),
        ),
        (
            "bad",
            json!({"image": "x", "workers": {"resources": {"requests": {"memory": "1025Mi"}, "limits": {"memory": "1Gi"}}}}),
            &*format!("spec.workers.resources: Invalid value: {above}"),
        ),
        (
            "bad",
            json!({"image": "x", "redis": {"managed": {"resources": {"requests": {"cpu": 1}, "limits": {"cpu": "500m"}}}}}),
            &*format!("spec.redis.managed.resources: Invalid value: {above}"),
        ),
        (
            "bad",
            json!({"image": "x", "retention": "Forever"}),
            "spec.retention: Unsupported value: \"Forever\"",
        ),
        (
            "bad",
            json!({"image": "x", "workers": {"minReplicas": 5, "maxReplicas": 2}}),
            "workers.minReplicas must be less than or equal to workers.maxReplicas",
        ),
        (
            "bad",
            json!({"image": "x", "workers": {"minReplicas": -1}}),
            "spec.workers.minReplicas: Invalid value: -1",
        ),
        (
            "bad",
            json!({"image": "x", "server": {"replicas": -2}}),
            "spec.server.replicas: Invalid value: -2",
        ),
        ("bad", json!({"image": ""}), "spec.image must not be empty"),
        (
            "bad",
            json!({"server": {"podLabels": {"app.kubernetes.io/instance": "x"}}}),
            "spec.server.podLabels: Invalid value: must not set the operator's own labels",
        ),
        (
            "bad",
            json!({"workers": {"podAnnotations": {"multivac.io/config-hash": "x"}}}),
            "spec.workers.podAnnotations: Invalid value: must not set annotations under multivac.io/",
        ),
        (
            "bad",
            json!({"server": {"service": {"annotations": {"multivac.io/x": "y"}}}}),
            "spec.server.service.annotations: Invalid value: must not set annotations under multivac.io/",
        ),
        (
            "bad",
            json!({"server": {"ingress": {"tlsSecretName": "tls"}}}),
            "server.ingress.tlsSecretName needs server.ingress.host",
        ),
        (
            "bad",
            json!({"image": "x", "redis": {"managed": {}, "external": {"secretRef": {"name": "r"}}}}),
            "set only one of redis.managed and redis.external",
        ),
        (
            "bad",
            json!({"image": "x", "mongodb": {"managed": {}, "external": {"secretRef": {"name": "m"}}}}),
            "set only one of mongodb.managed and mongodb.external",
        ),
    ] {
        let raw = json!({"apiVersion": "multivac.io/v1alpha1", "kind": "MultiVac",
            "metadata": {"name": name}, "spec": spec});
        let dynamic: Api<kube::api::DynamicObject> = Api::namespaced_with(
            client.clone(),
            &ns,
            &kube::core::ApiResource::erase::<MultiVac>(&()),
        );
        let err = dynamic
            .create(
                &PostParams::default(),
                &serde_json::from_value(raw).unwrap(),
            )
            .await
            .expect_err(&format!("the API server accepted an invalid spec: {spec}"));
        let text = err.to_string();
        assert!(
            text.contains(message),
            "rejection of {name} {spec} should say {message:?}, got: {text}"
        );
    }
    // The longest valid name passes, as do quantities of every form.
    let ok = json!({"image": "x", "redis": {"managed": {"storage": {"size": 2147483648_i64}}},
        "server": {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 1, "memory": "1024Mi"}}}});
    // No image (the operator's default), and every placement field at once.
    let placed = json!({"server": {
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1,
            "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}]}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}],
        "priorityClassName": "high", "podLabels": {"app.kubernetes.io/version": "1"},
        "podAnnotations": {"a/b": "c"},
        "service": {"annotations": {"service.beta.kubernetes.io/aws-load-balancer-internal": "true"}},
        "ingress": {"host": "mv.example.com", "tlsSecretName": "tls", "ingressClassName": "nginx"}},
        "redis": {"external": {"secretRef": {"name": "r"}, "caSecretRef": {"name": "ca"}}}});
    for (name, spec) in [
        (name_55.as_str(), valid.clone()),
        ("ok", ok),
        ("placed", placed),
    ] {
        let raw = json!({"apiVersion": "multivac.io/v1alpha1", "kind": "MultiVac",
            "metadata": {"name": name}, "spec": spec});
        let dynamic: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &ApiResource::erase::<MultiVac>(&()));
        dynamic
            .create(
                &PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &serde_json::from_value(raw).unwrap(),
            )
            .await
            .unwrap_or_else(|e| panic!("{name} {spec} refused: {e}"));
    }
    assert!(
        mvs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "nothing was stored"
    );
    cleanup(&client, &ns).await;
}

#[tokio::test]
async fn pods_are_admitted_where_restricted_is_enforced() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "mv-restricted", Some("restricted")).await;
    let _op = Operator::start(&ns).await;
    apply_sample(&client, &ns).await;
    wait_ready(&client, &ns, "multivac").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    for component in ["server", "worker", "redis", "mongodb"] {
        let lp = ListParams::default().labels(&format!("app.kubernetes.io/component={component}"));
        let n = pods.list(&lp).await.unwrap().items.len();
        assert!(
            n >= 1,
            "{component} pod not admitted under enforce=restricted"
        );
    }
    cleanup(&client, &ns).await;
}

#[tokio::test]
async fn a_missing_referenced_secret_is_reported_in_status() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "mv-missing", None).await;
    let _op = Operator::start(&ns).await;
    let mvs: Api<MultiVac> = Api::namespaced(client.clone(), &ns);
    let mv: MultiVac = serde_json::from_value(json!({
        "apiVersion": "multivac.io/v1alpha1", "kind": "MultiVac", "metadata": {"name": "ext"},
        "spec": {"image": "x", "redis": {"external": {"secretRef": {"name": "my-redis"}}}},
    }))
    .unwrap();
    mvs.create(&PostParams::default(), &mv).await.unwrap();
    let message = wait_for("Ready=False MissingSecret", || async {
        let mv = mvs.get("ext").await.ok()?;
        let c = mv
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")?;
        (c.status == "False" && c.reason == "MissingSecret").then_some(c.message)
    })
    .await;
    assert!(
        message.contains("\"my-redis\"") && message.contains("redis-url"),
        "{message}"
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    assert!(
        deployments
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "nothing built before the Secret exists"
    );
    cleanup(&client, &ns).await;
}

#[tokio::test]
async fn a_deleted_multivac_leaves_its_data_and_one_created_again_takes_it_back() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "mv-retain", None).await;
    let _op = Operator::start(&ns).await;
    apply_sample(&client, &ns).await;
    wait_ready(&client, &ns, "multivac").await;
    let kept = retained_uids(&client, &ns, "multivac").await;
    assert_eq!(kept.len(), 3, "{kept:?}");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let passwords = secrets.get("multivac-credentials").await.unwrap().data;

    let mvs: Api<MultiVac> = Api::namespaced(client.clone(), &ns);
    mvs.delete("multivac", &DeleteParams::default())
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    wait_for("the MultiVac and its Deployments gone", || async {
        let gone = mvs.get_opt("multivac").await.ok()?.is_none()
            && deployments
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .is_empty();
        gone.then_some(())
    })
    .await;
    assert_eq!(
        retained_uids(&client, &ns, "multivac").await,
        kept,
        "the PVCs and the Secret outlive the MultiVac"
    );

    apply_sample(&client, &ns).await;
    wait_ready(&client, &ns, "multivac").await;
    assert_eq!(
        retained_uids(&client, &ns, "multivac").await,
        kept,
        "the same PVCs and Secret, taken back"
    );
    assert_eq!(
        secrets.get("multivac-credentials").await.unwrap().data,
        passwords,
        "the same passwords"
    );
    for owners in retained_owners(&client, &ns, "multivac").await {
        assert!(owners.is_null(), "still retained: {owners}");
    }
    cleanup(&client, &ns).await;
}

#[tokio::test]
async fn retention_delete_lets_the_garbage_collector_remove_volumes_and_credentials() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "mv-delete", None).await;
    let _op = Operator::start(&ns).await;
    apply_sample(&client, &ns).await;
    wait_ready(&client, &ns, "multivac").await;
    let mvs: Api<MultiVac> = Api::namespaced(client.clone(), &ns);
    let uid = mvs.get("multivac").await.unwrap().uid().unwrap();
    let set_retention = |retention: &'static str| {
        let mvs = mvs.clone();
        async move {
            mvs.patch(
                "multivac",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"retention": retention}})),
            )
            .await
            .unwrap();
        }
    };
    // Switching on a live MultiVac moves the ownerReferences both ways.
    set_retention("Delete").await;
    wait_for("the PVCs and the Secret owned", || async {
        let owners = retained_owners(&client, &ns, "multivac").await;
        owners
            .iter()
            .all(|o| o[0]["uid"] == json!(uid) && o[0]["controller"] == json!(true))
            .then_some(())
    })
    .await;
    set_retention("Retain").await;
    wait_for("the PVCs and the Secret retained again", || async {
        let owners = retained_owners(&client, &ns, "multivac").await;
        owners
            .iter()
            .all(|o| o.as_array().is_none_or(Vec::is_empty))
            .then_some(())
    })
    .await;
    set_retention("Delete").await;
    wait_for("the PVCs and the Secret owned again", || async {
        let owners = retained_owners(&client, &ns, "multivac").await;
        owners
            .iter()
            .all(|o| o[0]["uid"] == json!(uid))
            .then_some(())
    })
    .await;

    mvs.delete("multivac", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the PVCs and the Secret garbage-collected", || async {
        retained_uids(&client, &ns, "multivac")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    cleanup(&client, &ns).await;
}

#[tokio::test]
async fn a_same_named_object_is_left_untouched_and_reported_as_a_conflict() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "mv-conflict", None).await;
    let config: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let theirs: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "multivac-config"},
        "data": {"owner": "someone else", "MULTIVAC_LOG_FORMAT": "text"}}))
    .unwrap();
    let before = config
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();
    let _op = Operator::start(&ns).await;
    apply_sample(&client, &ns).await;

    let message = wait_not_ready(
        &client,
        &ns,
        "multivac",
        "Conflict",
        "ConfigMap/multivac-config",
    )
    .await;
    assert!(
        message.contains("exists and is not this MultiVac's")
            && message.contains("delete or rename it"),
        "{message}"
    );
    children_exist_but(&client, &ns, "multivac", &["ConfigMap/multivac-config"]).await;
    let after = config.get("multivac-config").await.unwrap();
    assert_eq!(
        (after.metadata.resource_version.as_deref(), &after.data),
        (before.metadata.resource_version.as_deref(), &before.data),
        "the ConfigMap is byte-for-byte what its owner made"
    );
    assert!(after.metadata.owner_references.is_none(), "not adopted");
    assert!(
        after
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .all(|f| f.manager.as_deref() != Some("multivac-operator")),
        "never written by the operator: {:?}",
        after.metadata.managed_fields
    );
    wait_for("a Conflict Warning event", || async {
        let notes = warnings(&client, &ns, "multivac", "Conflict").await;
        notes
            .iter()
            .any(|n| n.contains("ConfigMap/multivac-config"))
            .then_some(())
    })
    .await;

    // Its owner deletes it: the operator makes its own (re-checked every 30 s).
    config
        .delete("multivac-config", &DeleteParams::default())
        .await
        .unwrap();
    wait_ready(&client, &ns, "multivac").await;
    let ours = config.get("multivac-config").await.unwrap();
    assert_eq!(ours.metadata.owner_references.unwrap()[0].name, "multivac");
    cleanup(&client, &ns).await;
}

#[tokio::test]
async fn a_multivac_named_default_leaves_the_default_service_account_alone() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "mv-default", None).await;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let before = wait_for("the namespace's default ServiceAccount", || async {
        accounts.get_opt("default").await.ok()?
    })
    .await;
    let _op = Operator::start(&ns).await;
    create_multivac(&client, &ns, "default", json!({"image": "multivac:0.1.0"})).await;
    wait_ready(&client, &ns, "default").await;

    let after = accounts.get("default").await.unwrap();
    assert_eq!(
        serde_json::to_value(&after).unwrap(),
        serde_json::to_value(&before).unwrap(),
        "the default ServiceAccount is untouched"
    );
    let ours = accounts.get("default-multivac").await.unwrap();
    assert_eq!(ours.metadata.owner_references.unwrap()[0].name, "default");
    assert_eq!(ours.automount_service_account_token, Some(false));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let server = deployments.get("default-server").await.unwrap();
    assert_eq!(
        server
            .spec
            .template
            .spec
            .unwrap()
            .service_account_name
            .as_deref(),
        Some("default-multivac")
    );
    cleanup(&client, &ns).await;
}

/// A namespace that refuses two children of a MultiVac that the CRD accepts:
/// an admission policy caps container CPU requests at 1 (the server asks for
/// 2), and a LimitRange caps PVCs at 1Gi (MongoDB's asks for 2Gi).
async fn refusing_namespace(client: &Client, ns: &str) -> String {
    let policy = format!("{ns}-cpu-cap");
    let apply = |resource: ApiResource, object: Value| {
        let client = client.clone();
        async move {
            let name = object["metadata"]["name"].as_str().unwrap().to_string();
            let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
                Some(n) => Api::namespaced_with(client, n, &resource),
                None => Api::all_with(client, &resource),
            };
            api.patch(
                &name,
                &PatchParams::apply("multivac-tests").force(),
                &Patch::Apply(object),
            )
            .await
            .unwrap_or_else(|e| panic!("apply {name}: {e}"));
        }
    };
    let admission = |kind: &str, plural: &str| ApiResource {
        group: "admissionregistration.k8s.io".into(),
        version: "v1".into(),
        api_version: "admissionregistration.k8s.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    apply(
        admission("ValidatingAdmissionPolicy", "validatingadmissionpolicies"),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": policy},
            "spec": {"failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]},
                "validations": [{"expression": "object.spec.template.spec.containers.all(c, !has(c.resources.requests) || !('cpu' in c.resources.requests) || quantity(string(c.resources.requests['cpu'])).compareTo(quantity('1')) <= 0)",
                    "message": "containers in this namespace may request at most 1 CPU"}]}}),
    )
    .await;
    apply(
        admission("ValidatingAdmissionPolicyBinding", "validatingadmissionpolicybindings"),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": policy},
            "spec": {"policyName": policy, "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}}}),
    )
    .await;
    apply(
        ApiResource::erase::<k8s_openapi::api::core::v1::LimitRange>(&()),
        json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "pvc-cap", "namespace": ns},
            "spec": {"limits": [{"type": "PersistentVolumeClaim", "max": {"storage": "1Gi"}}]}}),
    )
    .await;
    // The policy takes effect once the API server has loaded it.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let probe: Deployment = serde_json::from_value(json!({"metadata": {"name": "probe"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "2"}}}]}}}}))
    .unwrap();
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    wait_for("the admission policy in force", || async {
        deployments
            .create(&dry_run, &probe)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    policy
}

#[tokio::test]
async fn children_the_api_server_refuses_are_reported_while_the_others_are_applied() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "mv-refused", None).await;
    let policy = refusing_namespace(&client, &ns).await;
    let _op = Operator::start(&ns).await;
    let spec = |cpu: &str, size: &str| {
        json!({"image": "multivac:0.1.0",
            "server": {"resources": {"requests": {"cpu": cpu}, "limits": {"cpu": "4", "memory": "256Mi"}}},
            "mongodb": {"managed": {"storage": {"size": size}}}})
    };
    create_multivac(&client, &ns, "multivac", spec("2", "2Gi")).await;

    let message = wait_not_ready(
        &client,
        &ns,
        "multivac",
        "ChildRejected",
        "maximum storage usage per PersistentVolumeClaim is 1Gi, but request is 2Gi",
    )
    .await;
    assert!(
        message.contains("Deployment/multivac-server refused by the API server (422 Invalid)")
            && message.contains("containers in this namespace may request at most 1 CPU"),
        "the admission policy's own message: {message}"
    );
    assert!(
        message.contains(
            "PersistentVolumeClaim/multivac-mongodb-data refused by the API server (403 Forbidden)"
        ),
        "{message}"
    );
    children_exist_but(
        &client,
        &ns,
        "multivac",
        &[
            "Deployment/multivac-server",
            "PersistentVolumeClaim/multivac-mongodb-data",
        ],
    )
    .await;
    wait_for("a ChildRejected Warning for each", || async {
        let notes = warnings(&client, &ns, "multivac", "ChildRejected").await;
        let has = |s: &str| notes.iter().any(|n| n.contains(s));
        (has("Deployment/multivac-server") && has("request is 2Gi")).then_some(())
    })
    .await;
    let mvs: Api<MultiVac> = Api::namespaced(client.clone(), &ns);
    let mv = mvs.get("multivac").await.unwrap();
    let generation = mv.metadata.generation;
    assert_eq!(mv.status.unwrap().observed_generation, generation);

    // Refused for another reason: the new message is in status and in a new event.
    mvs.patch(
        "multivac",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"mongodb": {"managed": {"storage": {"size": "3Gi"}}}}})),
    )
    .await
    .unwrap();
    wait_not_ready(
        &client,
        &ns,
        "multivac",
        "ChildRejected",
        "but request is 3Gi",
    )
    .await;
    wait_for("a Warning with the new message", || async {
        let notes = warnings(&client, &ns, "multivac", "ChildRejected").await;
        notes
            .iter()
            .any(|n| n.contains("request is 3Gi"))
            .then_some(())
    })
    .await;

    // Within the namespace's rules: everything is applied and Ready.
    mvs.patch(
        "multivac",
        &PatchParams::apply("multivac-tests").force(),
        &Patch::Apply(
            json!({"apiVersion": "multivac.io/v1alpha1", "kind": "MultiVac",
            "metadata": {"name": "multivac"}, "spec": spec("500m", "1Gi")}),
        ),
    )
    .await
    .unwrap();
    wait_ready(&client, &ns, "multivac").await;
    let mv = mvs.get("multivac").await.unwrap();
    let ready = mv
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        ready.observed_generation, mv.metadata.generation,
        "Ready=True for the current spec"
    );

    for (kind, plural) in [
        (
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
        ),
        ("ValidatingAdmissionPolicy", "validatingadmissionpolicies"),
    ] {
        let resource = ApiResource {
            group: "admissionregistration.k8s.io".into(),
            version: "v1".into(),
            api_version: "admissionregistration.k8s.io/v1".into(),
            kind: kind.into(),
            plural: plural.into(),
        };
        let _ = Api::<DynamicObject>::all_with(client.clone(), &resource)
            .delete(&policy, &DeleteParams::default())
            .await;
    }
    cleanup(&client, &ns).await;
}

#[tokio::test]
async fn a_multivac_of_the_previous_release_is_upgraded_in_place_deleting_nothing() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "mv-upgrade", None).await;
    create_multivac(&client, &ns, "legacy", json!({"image": "multivac:0.1.0"})).await;
    let mvs: Api<MultiVac> = Api::namespaced(client.clone(), &ns);
    let uid = mvs.get("legacy").await.unwrap().uid().unwrap();
    // What the previous release made, as it made it: every child controlled
    // by the MultiVac and server-side applied by the operator's field
    // manager, the credentials Secret created, the ServiceAccount named
    // like the MultiVac.
    let owner = json!([{"apiVersion": "multivac.io/v1alpha1", "kind": "MultiVac", "name": "legacy",
        "uid": uid, "controller": true, "blockOwnerDeletion": true}]);
    let labels = |component: &str| {
        json!({"app.kubernetes.io/name": "multivac",
        "app.kubernetes.io/instance": "legacy", "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "multivac", "app.kubernetes.io/managed-by": "multivac-operator"})
    };
    let old = PatchParams::apply("multivac-operator").force();
    for (resource, object) in [
        (
            ApiResource::erase::<ServiceAccount>(&()),
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "legacy", "labels": labels("multivac"), "ownerReferences": owner},
            "automountServiceAccountToken": false}),
        ),
        (
            ApiResource::erase::<ConfigMap>(&()),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "legacy-config", "labels": labels("multivac"), "ownerReferences": owner},
            "data": {"MULTIVAC_MONGODB_DATABASE": "multivac", "MULTIVAC_LOG_FORMAT": "json"}}),
        ),
        (
            ApiResource::erase::<PersistentVolumeClaim>(&()),
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "legacy-redis-data", "labels": labels("redis"), "ownerReferences": owner},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
        ),
        (
            ApiResource::erase::<PersistentVolumeClaim>(&()),
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "legacy-mongodb-data", "labels": labels("mongodb"), "ownerReferences": owner},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
        ),
    ] {
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &resource)
            .patch(&name, &old, &Patch::Apply(object))
            .await
            .unwrap_or_else(|e| panic!("apply {name}: {e}"));
    }
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "legacy-credentials",
        "labels": labels("multivac"), "ownerReferences": owner},
        "stringData": {"redis-password": "p1", "redis-url": "redis://:p1@legacy-redis:6379/0",
            "mongodb-username": "multivac", "mongodb-password": "p2",
            "mongodb-uri": "mongodb://multivac:p2@legacy-mongodb:27017/?authSource=admin"}}))
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let created = secrets
        .create(
            &PostParams {
                field_manager: Some("multivac-operator".into()),
                ..Default::default()
            },
            &secret,
        )
        .await
        .unwrap();
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let config_uid = configs.get("legacy-config").await.unwrap().uid();
    let kept = retained_uids(&client, &ns, "legacy").await;
    assert_eq!(kept.len(), 3);

    let _op = Operator::start(&ns).await;
    wait_ready(&client, &ns, "legacy").await;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    wait_for("the old ServiceAccount removed", || async {
        accounts
            .get_opt("legacy")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert!(accounts.get_opt("legacy-multivac").await.unwrap().is_some());
    assert_eq!(
        retained_uids(&client, &ns, "legacy").await,
        kept,
        "no PVC or Secret replaced"
    );
    assert_eq!(
        configs.get("legacy-config").await.unwrap().uid(),
        config_uid,
        "updated in place"
    );
    assert_eq!(
        secrets.get("legacy-credentials").await.unwrap().data,
        created.data,
        "the same passwords"
    );
    wait_for("the PVCs and the Secret retained", || async {
        let owners = retained_owners(&client, &ns, "legacy").await;
        owners
            .iter()
            .all(|o| o.as_array().is_none_or(Vec::is_empty))
            .then_some(())
    })
    .await;

    // And the upgraded MultiVac now keeps its data when deleted.
    mvs.delete("legacy", &DeleteParams::default())
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    wait_for("the Deployments garbage-collected", || async {
        deployments
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    assert_eq!(retained_uids(&client, &ns, "legacy").await, kept);
    cleanup(&client, &ns).await;
}

/// Placement, the Service's annotations and the Ingress, on the real API
/// server: each lands where the spec says (and the API server accepts the
/// objects), the Ingress routes only the API, and it goes away when unset.
#[tokio::test]
async fn placement_service_annotations_and_the_ingress_reach_the_children() {
    use k8s_openapi::api::networking::v1::Ingress;
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "mv-placed", None).await;
    let _op = Operator::start(&ns).await;
    let placement = json!({
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "multivac", "effect": "NoSchedule"}],
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "placed"}}}],
        "podLabels": {"team": "entropy"},
        "podAnnotations": {"example.com/note": "placed"},
    });
    let mut server = placement.clone();
    server["service"] = json!({"type": "LoadBalancer",
        "annotations": {"service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"}});
    server["ingress"] = json!({"host": "multivac.example.com", "ingressClassName": "nginx",
        "tlsSecretName": "multivac-tls", "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"}});
    create_multivac(
        &client,
        &ns,
        "placed",
        json!({"server": server, "workers": placement, "redis": {"managed": placement}}),
    )
    .await;
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    let ingress = wait_for("the Ingress", || async {
        ingresses.get_opt("placed-server").await.ok()?
    })
    .await;
    let ingress = serde_json::to_value(ingress).unwrap();
    assert_eq!(get(&ingress, "spec.ingressClassName"), "nginx");
    assert_eq!(
        get(&ingress, "spec.tls"),
        &json!([{"hosts": ["multivac.example.com"], "secretName": "multivac-tls"}])
    );
    let paths: Vec<&str> = get(&ingress, "spec.rules.0.http.paths")
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/", "/multivac"], "the API only");
    assert_eq!(
        get(&ingress, "spec.rules.0.http.paths.1.backend.service"),
        &json!({"name": "placed-server", "port": {"name": "http"}})
    );
    assert_eq!(
        ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"],
        "letsencrypt"
    );
    let service = json_of::<Service>(&client, &ns, "placed-server").await;
    assert_eq!(
        service["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-scheme"],
        "internal"
    );
    assert_eq!(get(&service, "spec.type"), "LoadBalancer");
    for name in ["placed-server", "placed-worker", "placed-redis"] {
        let d = wait_for("the Deployment", || async {
            Api::<Deployment>::namespaced(client.clone(), &ns)
                .get_opt(name)
                .await
                .ok()?
        })
        .await;
        let d = serde_json::to_value(d).unwrap();
        let template = get(&d, "spec.template");
        assert_eq!(template["metadata"]["labels"]["team"], "entropy", "{name}");
        assert_eq!(
            template["metadata"]["labels"]["app.kubernetes.io/instance"], "placed",
            "{name}"
        );
        assert_eq!(
            template["metadata"]["annotations"]["example.com/note"], "placed",
            "{name}"
        );
        assert_eq!(
            get(template, "spec.nodeSelector"),
            &json!({"kubernetes.io/os": "linux"}),
            "{name}"
        );
        assert_eq!(
            get(template, "spec.tolerations.0.key"),
            "dedicated",
            "{name}"
        );
        assert_eq!(
            get(template, "spec.topologySpreadConstraints.0.topologyKey"),
            "kubernetes.io/hostname",
            "{name}"
        );
    }
    // No ingress asked: the operator deletes its Ingress.
    Api::<MultiVac>::namespaced(client.clone(), &ns)
        .patch(
            "placed",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"server": {"ingress": null}}})),
        )
        .await
        .unwrap();
    wait_for("the Ingress to be deleted", || async {
        ingresses
            .get_opt("placed-server")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    cleanup(&client, &ns).await;
}
