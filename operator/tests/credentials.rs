//! The generated credentials, on the real control plane with real stores:
//! never regenerated over data, rolled into the pods when a Secret changes,
//! and rotated inside redis-server and FerretDB under a steady POST load
//! through real `multivac server` and `worker` processes, losing no accepted
//! datum. kwok runs no containers, so the operator runs in this process with
//! the stores' Services mapped to the local servers, and the test plays the
//! kubelet for the app: it restarts its processes with the Secret's new
//! values while the Deployments are paused, then lets them roll.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    App, FerretDb, ManagedMongoDb, Operator, Redis, TestNamespace, client, free_port, install_crd,
    secret_value, wait_for, wait_up_to,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use mongodb::bson::{Document, doc};
use multivac_operator::MultiVac;
use serde_json::{Value, json};
use tokio::sync::RwLock;

const ROTATE: &str = "multivac.io/rotate-credentials";

async fn create_multivac(client: &Client, ns: &str, spec: Value) {
    let mv: MultiVac = serde_json::from_value(json!({
        "apiVersion": "multivac.io/v1alpha1", "kind": "MultiVac",
        "metadata": {"name": "mv"}, "spec": spec,
    }))
    .unwrap();
    Api::<MultiVac>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &mv)
        .await
        .expect("create the MultiVac");
}

/// The Ready condition's (status, reason, message).
async fn ready(client: &Client, ns: &str) -> Option<(String, String, String)> {
    let mv = Api::<MultiVac>::namespaced(client.clone(), ns)
        .get("mv")
        .await
        .ok()?;
    let c = mv
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")?;
    Some((c.status, c.reason, c.message))
}

async fn annotate(client: &Client, ns: &str, key: &str, value: &str) {
    Api::<MultiVac>::namespaced(client.clone(), ns)
        .patch(
            "mv",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
        )
        .await
        .expect("annotate the MultiVac");
}

/// The notes of the Events with `reason` about MultiVac `mv`.
async fn events(client: &Client, ns: &str, reason: &str) -> Vec<String> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("list the Events")
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("mv")
        })
        .filter_map(|e| e.note)
        .collect()
}

fn template_annotation(d: &Deployment, key: &str) -> Option<String> {
    d.spec
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(key)
        .cloned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_credentials_secret_over_data_volumes_is_refused_not_regenerated() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "mv-creds-missing").await;
    let mongodb = ManagedMongoDb::new(&client, &ns.name, "mv");
    let _op = Operator::start(&client, &ns.name, |ctx| {
        ctx.with_store_address(&mongodb.service, &mongodb.address)
    })
    .await;
    create_multivac(&client, &ns.name, json!({"image": "multivac:1"})).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let backup = wait_for("the credentials Secret", || async {
        secrets.get_opt("mv-credentials").await.ok()?
    })
    .await;
    wait_for("Ready=True", || async {
        (ready(&client, &ns.name).await?.0 == "True").then_some(())
    })
    .await;

    secrets
        .delete("mv-credentials", &DeleteParams::default())
        .await
        .unwrap();
    // Secrets are not watched: a change of the MultiVac (or the 5 min
    // re-check) brings the reconcile that sees it.
    annotate(&client, &ns.name, "poke", "1").await;
    let (_, _, message) = wait_for("Ready=False CredentialsMissing", || async {
        let (status, reason, message) = ready(&client, &ns.name).await?;
        (status == "False" && reason == "CredentialsMissing").then_some((status, reason, message))
    })
    .await;
    for needle in [
        "mv-credentials",
        "mv-redis-data",
        "mv-mongodb-data",
        "backup",
    ] {
        assert!(message.contains(needle), "{needle:?} in {message}");
    }
    annotate(&client, &ns.name, "poke", "2").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        secrets.get_opt("mv-credentials").await.unwrap().is_none(),
        "no new passwords over the existing data"
    );

    // Restored from the backup as the README says: without the fields that
    // tie it to the deleted object, with its labels and annotations.
    let mut restored = backup.clone();
    restored.metadata = kube::api::ObjectMeta {
        name: backup.metadata.name.clone(),
        labels: backup.metadata.labels.clone(),
        annotations: backup.metadata.annotations.clone(),
        ..Default::default()
    };
    assert!(
        restored.annotations().contains_key("multivac.io/owner"),
        "the backup names its MultiVac: {:?}",
        backup.metadata
    );

    // A Secret of the same name that does not say it is this MultiVac's
    // (here: the backup without its annotations) is not taken over.
    let mut unmarked = restored.clone();
    unmarked.metadata.annotations = None;
    secrets
        .create(&PostParams::default(), &unmarked)
        .await
        .unwrap();
    annotate(&client, &ns.name, "poke", "3").await;
    let (_, _, message) = wait_for("Ready=False Conflict", || async {
        let (status, reason, message) = ready(&client, &ns.name).await?;
        (status == "False" && reason == "Conflict").then_some((status, reason, message))
    })
    .await;
    assert!(message.contains("Secret/mv-credentials"), "{message}");
    let left = secrets.get("mv-credentials").await.unwrap();
    assert!(
        left.owner_references().is_empty() && left.annotations().is_empty(),
        "left as it is: {:?}",
        left.metadata
    );
    secrets
        .delete("mv-credentials", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the unmarked Secret gone", || async {
        secrets
            .get_opt("mv-credentials")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;

    // Restored: Ready again, with the same passwords.
    secrets
        .create(&PostParams::default(), &restored)
        .await
        .unwrap();
    annotate(&client, &ns.name, "poke", "4").await;
    wait_for("Ready=True after the restore", || async {
        (ready(&client, &ns.name).await?.0 == "True").then_some(())
    })
    .await;
    assert_eq!(
        secrets.get("mv-credentials").await.unwrap().data,
        backup.data
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_api_token_rolls_the_server_pods_within_a_minute() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "mv-token").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let token = |t: &str| -> Secret {
        serde_json::from_value(json!({"metadata": {"name": "tok"}, "stringData": {"token": t}}))
            .unwrap()
    };
    secrets
        .create(&PostParams::default(), &token("first"))
        .await
        .unwrap();
    let mongodb = ManagedMongoDb::new(&client, &ns.name, "mv");
    let _op = Operator::start(&client, &ns.name, |ctx| {
        ctx.with_store_address(&mongodb.service, &mongodb.address)
    })
    .await;
    create_multivac(
        &client,
        &ns.name,
        json!({"image": "multivac:1", "apiTokenSecretRef": {"name": "tok"}}),
    )
    .await;
    wait_for("Ready=True", || async {
        (ready(&client, &ns.name).await?.0 == "True").then_some(())
    })
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let hash = |name: &'static str| {
        let deployments = deployments.clone();
        async move {
            template_annotation(
                &deployments.get(name).await.unwrap(),
                "multivac.io/secrets-hash",
            )
            .expect("a secrets-hash annotation")
        }
    };
    let (server, worker) = (hash("mv-server").await, hash("mv-worker").await);
    let generation = deployments
        .get("mv-server")
        .await
        .unwrap()
        .metadata
        .generation;

    secrets
        .patch(
            "tok",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"token": "second"}})),
        )
        .await
        .unwrap();
    let changed_at = tokio::time::Instant::now();
    // No event about the Secret reaches the operator: its 60 s re-read does.
    wait_up_to(
        Duration::from_secs(90),
        "the server template to change",
        || async { (hash("mv-server").await != server).then_some(()) },
    )
    .await;
    eprintln!(
        "server template changed {:?} after the token",
        changed_at.elapsed()
    );
    assert_eq!(
        hash("mv-worker").await,
        worker,
        "workers do not use the token"
    );
    assert!(
        deployments
            .get("mv-server")
            .await
            .unwrap()
            .metadata
            .generation
            > generation
    );
    let d = deployments.get("mv-server").await.unwrap();
    let shown = serde_json::to_string(&d).unwrap();
    assert!(
        !shown.contains("second"),
        "the token itself is not in the Deployment"
    );
    wait_for("Ready=True after the roll", || async {
        (ready(&client, &ns.name).await?.0 == "True").then_some(())
    })
    .await;
}

/// What the steady load saw.
#[derive(Default)]
struct Load {
    accepted: Vec<String>,
    refused: Vec<String>,
}

/// POSTs a datum every few milliseconds to whichever server `target` names,
/// until `stop`; every 202 is an accepted datum whose id must be stored.
fn steady_load(
    target: Arc<RwLock<String>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Load> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut load = Load::default();
        let mut i = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            i += 1;
            let url = format!("{}/multivac/data", target.read().await);
            let answer = http
                .post(&url)
                .form(&[("data", format!("rotation datum{i} concept{}", i % 50))])
                .send()
                .await;
            match answer {
                Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED => {
                    let body: Value = r.json().await.unwrap_or_default();
                    load.accepted
                        .push(body["id"].as_str().unwrap_or_default().to_string());
                }
                Ok(r) => load.refused.push(format!("datum{i}: {}", r.status())),
                Err(e) => load.refused.push(format!("datum{i}: {e}")),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        load
    })
}

/// The Secret's connection strings, pointed at the local servers.
struct Wiring {
    redis_url: String,
    mongodb_uri: String,
}

async fn wiring(client: &Client, ns: &str, redis_port: u16, mongodb_port: u16) -> Wiring {
    let value = |key: &'static str| async move {
        secret_value(client, ns, "mv-credentials", key)
            .await
            .unwrap_or_else(|| panic!("key {key}"))
    };
    Wiring {
        redis_url: value("redis-url").await.replace(
            &format!("mv-redis.{ns}.svc:6379"),
            &format!("127.0.0.1:{redis_port}"),
        ),
        mongodb_uri: value("mongodb-uri").await.replace(
            &format!("mv-mongodb.{ns}.svc:27017"),
            &format!("127.0.0.1:{mongodb_port}"),
        ),
    }
}

async fn pause(client: &Client, ns: &str, paused: bool) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    for name in ["mv-server", "mv-worker"] {
        deployments
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"paused": paused}})),
            )
            .await
            .unwrap();
    }
}

async fn secret_annotations(
    client: &Client,
    ns: &str,
) -> std::collections::BTreeMap<String, String> {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get("mv-credentials")
        .await
        .unwrap()
        .annotations()
        .clone()
}

/// One rotation under load, from a Secret of before app users (`legacy`:
/// the app uses MongoDB's root user) or from a new one (`multivac-a`).
async fn rotation_under_load(legacy: bool) {
    let client = client().await;
    install_crd(&client).await;
    let namespace = TestNamespace::new(
        &client,
        if legacy {
            "mv-rotate-legacy"
        } else {
            "mv-rotate"
        },
    )
    .await;
    let ns = namespace.name.clone();
    let (redis_port, mongodb_port) = (free_port(), free_port());
    let _op = Operator::start(&client, &ns, |ctx| {
        ctx.with_store_address(
            &format!("mv-redis.{ns}.svc:6379"),
            &format!("127.0.0.1:{redis_port}"),
        )
        .with_store_address(
            &format!("mv-mongodb.{ns}.svc:27017"),
            &format!("127.0.0.1:{mongodb_port}"),
        )
    })
    .await;
    create_multivac(&client, &ns, json!({"image": "multivac:1"})).await;
    let secret = |key: &'static str| {
        let (client, ns) = (client.clone(), ns.clone());
        async move {
            secret_value(&client, &ns, "mv-credentials", key)
                .await
                .unwrap_or_else(|| panic!("key {key}"))
        }
    };
    wait_for("the credentials Secret", || async {
        secret_value(&client, &ns, "mv-credentials", "redis-password").await
    })
    .await;
    let (root, root0) = (
        secret("mongodb-username").await,
        secret("mongodb-password").await,
    );
    let redis0 = secret("redis-password").await;
    if legacy {
        // As an operator before app users wrote it: the app is MongoDB's root.
        Api::<Secret>::namespaced(client.clone(), &ns)
            .patch(
                "mv-credentials",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"mongodb-app-username": null, "mongodb-app-password": null},
                    "stringData": {"mongodb-uri": format!("mongodb://{root}:{root0}@mv-mongodb.{ns}.svc:27017/?authSource=admin")}})),
            )
            .await
            .unwrap();
    }
    let redis = Redis::start(redis_port, &redis0);
    let mongo = FerretDb::start(mongodb_port, &root, &root0);
    let app0 = (!legacy).then_some("multivac-a");
    wait_for("Ready=True", || async {
        (ready(&client, &ns).await?.0 == "True").then_some(())
    })
    .await;
    if let Some(app) = app0 {
        // The operator made the app's user (FerretDB: without roles) before
        // the MultiVac was Ready, and said so.
        let password = secret("mongodb-app-password").await;
        assert!(
            mongo.accepts(app, &password).await,
            "{app} authenticates with the Secret's password"
        );
        let notes = events(&client, &ns, "MongoDBUserCreated").await;
        assert_eq!(
            notes,
            [format!(
                "created the app's MongoDB user {app} (readWrite on multivac)"
            )]
        );
    }

    let w = wiring(&client, &ns, redis_port, mongodb_port).await;
    let server = App::start(
        "server",
        &w.redis_url,
        &w.mongodb_uri,
        "multivac",
        "server-0",
    );
    let worker = App::start(
        "worker",
        &w.redis_url,
        &w.mongodb_uri,
        "multivac",
        "worker-0",
    );
    let target = Arc::new(RwLock::new(format!("http://127.0.0.1:{}", server.port)));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = steady_load(target.clone(), stop.clone());
    wait_up_to(
        Duration::from_secs(30),
        "the first accepted datum",
        || async {
            let url = format!("{}/multivac/data", target.read().await);
            let ok = reqwest::Client::new()
                .post(url)
                .form(&[("data", "warm up")])
                .send()
                .await
                .ok()?;
            (ok.status() == reqwest::StatusCode::ACCEPTED).then_some(())
        },
    )
    .await;

    // The kubelet's part is ours: the pods stay as they are until we roll them.
    pause(&client, &ns, true).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let hash0 = template_annotation(
        &deployments.get("mv-server").await.unwrap(),
        "multivac.io/secrets-hash",
    );
    annotate(&client, &ns, ROTATE, "2026-05-01").await;
    wait_for("the rotation to switch the Secret", || async {
        (secret_annotations(&client, &ns)
            .await
            .get("multivac.io/rotation-phase")?
            == "Switched")
            .then_some(())
    })
    .await;
    let redis1 = secret("redis-password").await;
    let app1 = secret("mongodb-app-username").await;
    let app1_password = secret("mongodb-app-password").await;
    assert_ne!(redis1, redis0);
    assert_eq!(app1, if legacy { "multivac-a" } else { "multivac-b" });
    assert!(
        redis.accepts(&redis0).await && redis.accepts(&redis1).await,
        "Redis accepts both"
    );
    assert!(
        mongo.accepts(&app1, &app1_password).await,
        "the new app user exists"
    );
    wait_for("the pod templates to carry the new Secret", || async {
        let now = template_annotation(
            &deployments.get("mv-server").await.ok()?,
            "multivac.io/secrets-hash",
        );
        (now != hash0).then_some(())
    })
    .await;

    // The roll: new pods first, then the old ones stop (SIGTERM drains them).
    let w = wiring(&client, &ns, redis_port, mongodb_port).await;
    let server1 = App::start(
        "server",
        &w.redis_url,
        &w.mongodb_uri,
        "multivac",
        "server-1",
    );
    let worker1 = App::start(
        "worker",
        &w.redis_url,
        &w.mongodb_uri,
        "multivac",
        "worker-1",
    );
    *target.write().await = format!("http://127.0.0.1:{}", server1.port);
    assert!(
        server.stop().success(),
        "the old server drained and exited 0"
    );
    assert!(
        worker.stop().success(),
        "the old worker finished its batch and exited 0"
    );
    pause(&client, &ns, false).await;

    wait_for("the rotation to finish", || async {
        let a = secret_annotations(&client, &ns).await;
        (a.get("multivac.io/rotated").map(String::as_str) == Some("2026-05-01")
            && !a.contains_key("multivac.io/rotation-phase")
            && !a.contains_key("multivac.io/rotating"))
        .then_some(())
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let load = load.await.unwrap();

    // The old credentials are gone, the new ones work.
    let root1 = secret("mongodb-password").await;
    assert_ne!(root1, root0, "the root password changed");
    assert!(
        !redis.accepts(&redis0).await,
        "Redis refuses the old password"
    );
    assert!(redis.accepts(&redis1).await);
    assert!(mongo.accepts(&root, &root1).await && !mongo.accepts(&root, &root0).await);
    assert!(mongo.accepts(&app1, &app1_password).await);
    if let Some(app) = app0 {
        let users = mongo
            .client(&root, &root1)
            .await
            .database("admin")
            .run_command(doc! {"usersInfo": app})
            .await
            .unwrap();
        assert!(
            users.get_array("users").unwrap().is_empty(),
            "{app} was dropped"
        );
    }
    let secret_now = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("mv-credentials")
        .await
        .unwrap();
    let keys: Vec<&String> = secret_now.data.as_ref().unwrap().keys().collect();
    assert!(
        keys.iter()
            .all(|k| !k.ends_with("-next") && !k.ends_with("-previous")),
        "working keys removed: {keys:?}"
    );

    // No request lost, every accepted datum stored.
    assert!(
        load.refused.is_empty(),
        "refused during the rotation: {:?}",
        load.refused
    );
    assert!(
        load.accepted.len() > 100,
        "a steady load: {} accepted",
        load.accepted.len()
    );
    let data = mongo
        .client(&app1, &app1_password)
        .await
        .database("multivac")
        .collection::<Document>("data");
    let stored = wait_up_to(
        Duration::from_secs(60),
        "every accepted datum stored",
        || async {
            let n = data
                .count_documents(doc! {"_id": {"$in": &load.accepted}})
                .await
                .ok()?;
            (n as usize == load.accepted.len()).then_some(n)
        },
    )
    .await;
    eprintln!(
        "rotation (legacy: {legacy}): {} accepted, {} refused, {stored} stored",
        load.accepted.len(),
        load.refused.len()
    );
    drop((server1, worker1));
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_under_load_moves_a_legacy_secret_off_the_root_user_and_loses_nothing() {
    rotation_under_load(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_under_load_alternates_app_users_and_loses_nothing() {
    rotation_under_load(false).await;
}
