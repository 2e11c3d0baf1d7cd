//! The operator against the real local control plane: each test gets its own
//! namespace and its own operator process watching only that namespace.

use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::runtime::wait::await_condition;
use kube::{Client, CustomResourceExt};
use multivac_operator::MultiVac;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

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
        &Patch::Apply(MultiVac::crd()),
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
}

impl Operator {
    async fn start(ns: &str) -> Self {
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
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn multivac-operator");
        Self {
            child,
            metrics: format!("http://127.0.0.1:{port}/metrics"),
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
        ("ServiceAccount", "multivac"),
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
        assert_eq!(
            get(&obj, "metadata.ownerReferences.0.uid"),
            &uid,
            "{kind}/{name} owned by the MultiVac"
        );
        assert_eq!(get(&obj, "metadata.ownerReferences.0.controller"), true);
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
    assert_eq!(get(pod, "containers.0.image"), "multivac:0.1.0");
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

    // Delete the MultiVac: the garbage collector removes every child.
    mvs.delete("multivac", &DeleteParams::default())
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    wait_for("children garbage-collected", || async {
        let lp = ListParams::default().labels("app.kubernetes.io/managed-by=multivac-operator");
        let left = deployments.list(&lp).await.ok()?.items.len()
            + services.list(&lp).await.ok()?.items.len()
            + secrets.list(&lp).await.ok()?.items.len()
            + config.list(&lp).await.ok()?.items.len();
        (left == 0).then_some(())
    })
    .await;
    cleanup(&client, &ns).await;
}

#[tokio::test]
async fn invalid_specs_are_rejected_by_the_api_server() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "mv-invalid", None).await;
    let mvs: Api<MultiVac> = Api::namespaced(client.clone(), &ns);
    for (spec, message) in [
        (
            json!({"image": "x", "workers": {"minReplicas": 5, "maxReplicas": 2}}),
            "workers.minReplicas must be less than or equal to workers.maxReplicas",
        ),
        (
            json!({"image": "x", "workers": {"minReplicas": -1}}),
            "spec.workers.minReplicas: Invalid value: -1",
        ),
        (
            json!({"image": "x", "server": {"replicas": -2}}),
            "spec.server.replicas: Invalid value: -2",
        ),
        (json!({"image": ""}), "spec.image must not be empty"),
        (json!({"server": {}}), "spec.image: Required value"),
        (
            json!({"image": "x", "redis": {"managed": {}, "external": {"secretRef": {"name": "r"}}}}),
            "set only one of redis.managed and redis.external",
        ),
        (
            json!({"image": "x", "mongodb": {"managed": {}, "external": {"secretRef": {"name": "m"}}}}),
            "set only one of mongodb.managed and mongodb.external",
        ),
    ] {
        let raw = json!({"apiVersion": "multivac.io/v1alpha1", "kind": "MultiVac",
            "metadata": {"name": "bad"}, "spec": spec});
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
            "rejection of {spec} should say {message:?}, got: {text}"
        );
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
