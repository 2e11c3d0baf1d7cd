//! What the server and worker pods share: env wiring to the Secrets and the
//! ConfigMap, the restricted security context, volumes, pod template shape.

use multivac_contract::{env, path};
use serde_json::{Value, json};

use super::{app_pod_security, container_security, pull_secrets, selector_labels};
use crate::crd::SecretSource;
use crate::validated::Validated;

fn secret_env(name: &str, src: &SecretSource) -> Value {
    json!({"name": name, "valueFrom": {"secretKeyRef": {"name": src.name, "key": src.key}}})
}

/// Environment of an app container: connection strings from Secrets (never
/// in the pod spec itself), POD_NAME for the consumer name and logs.
pub fn env(mv: &Validated, with_api_token: bool) -> Value {
    let mut env = vec![
        json!({"name": env::POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
        secret_env(env::REDIS_URL, &mv.redis_url_source()),
        secret_env(env::MONGODB_URI, &mv.mongodb_uri_source()),
    ];
    if with_api_token && let Some(src) = mv.api_token_source() {
        env.push(secret_env(env::API_TOKEN, &src));
    }
    for ca in cas(mv) {
        env.push(json!({"name": ca.env, "value": format!("{}/{CA_FILE}", ca.dir)}));
    }
    Value::Array(env)
}

/// A digest of the values of every Secret key the pod reads (the
/// `secretKeyRef`s of `container`'s env and the items of the Secret
/// `volumes`, the CAs of external stores), from the digests [`Validated`]
/// carries: changes when one of them does, tells nothing about them.
fn secrets_hash(mv: &Validated, container: &Value, volumes: &Value) -> String {
    let from_env = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|env| &env["valueFrom"]["secretKeyRef"])
        .filter_map(|source| Some((source["name"].as_str()?, source["key"].as_str()?)));
    let from_volumes = volumes
        .as_array()
        .into_iter()
        .flatten()
        .map(|volume| &volume["secret"])
        .flat_map(|secret| {
            let name = secret["secretName"].as_str();
            secret["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |item| Some((name?, item["key"].as_str()?)))
        });
    let mut lines = String::new();
    for (name, key) in from_env.chain(from_volumes) {
        let digest = mv
            .secret_digests
            .get(&(name.to_string(), key.to_string()))
            .map_or("unknown", String::as_str);
        lines.push_str(&format!("{name}/{key}={digest}\n"));
    }
    crate::credentials::digest(lines.as_bytes())[..16].to_string()
}

/// Where the CA Secrets of external stores are mounted (read-only, one
/// folder each) and the file name in those folders.
const TLS_DIR: &str = "/etc/multivac/tls";
const CA_FILE: &str = "ca.crt";

/// The CA of one external store, as the pods get it.
struct CaMount {
    volume: &'static str,
    dir: String,
    env: &'static str,
    source: SecretSource,
}

/// The CAs the spec names: a volume from the user's Secret, mounted where
/// the app's `MULTIVAC_*_CA_FILE` points.
fn cas(mv: &Validated) -> Vec<CaMount> {
    let redis = mv.redis_ca_source().map(|source| CaMount {
        volume: "redis-ca",
        dir: format!("{TLS_DIR}/redis"),
        env: env::REDIS_CA_FILE,
        source,
    });
    let mongodb = mv.mongodb_ca_source().map(|source| CaMount {
        volume: "mongodb-ca",
        dir: format!("{TLS_DIR}/mongodb"),
        env: env::MONGODB_CA_FILE,
        source,
    });
    redis.into_iter().chain(mongodb).collect()
}

/// The pod's volumes: a small writable /tmp, and the CAs.
fn volumes(mv: &Validated) -> Value {
    let mut volumes = vec![json!({"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}})];
    for ca in cas(mv) {
        volumes.push(json!({"name": ca.volume, "secret": {
            "secretName": ca.source.name,
            "items": [{"key": ca.source.key, "path": CA_FILE}],
            "defaultMode": 0o444,
        }}));
    }
    Value::Array(volumes)
}

/// The container's mounts of [`volumes`].
fn volume_mounts(mv: &Validated) -> Value {
    let mut mounts = vec![json!({"name": "tmp", "mountPath": "/tmp"})];
    for ca in cas(mv) {
        mounts.push(json!({"name": ca.volume, "mountPath": ca.dir, "readOnly": true}));
    }
    Value::Array(mounts)
}

/// Pod template of an app component running `multivac <command>`.
pub fn template(
    mv: &Validated,
    component: &str,
    container: Value,
    termination_grace_seconds: i64,
) -> Value {
    let volumes = volumes(mv);
    json!({
        "metadata": {
            "labels": super::labels(mv, component),
            "annotations": {
                super::CONFIG_HASH_ANNOTATION: super::config_map::hash(mv),
                super::SECRETS_HASH_ANNOTATION: secrets_hash(mv, &container, &volumes),
            },
        },
        "spec": {
            "serviceAccountName": mv.service_account_name(),
            "automountServiceAccountToken": false,
            "securityContext": app_pod_security(),
            "imagePullSecrets": pull_secrets(mv),
            "terminationGracePeriodSeconds": termination_grace_seconds,
            "containers": [container],
            "volumes": volumes,
        },
    })
}

/// The app container: `multivac <command>`, probes on `port`.
pub fn container(
    mv: &Validated,
    command: &str,
    port_name: &str,
    port: u16,
    env: Value,
    resources: Value,
) -> Value {
    let mut c = json!({
        "name": command,
        "image": mv.image,
        "args": [command],
        "ports": [{"name": port_name, "containerPort": port, "protocol": "TCP"}],
        "env": env,
        "envFrom": [{"configMapRef": {"name": mv.config_name()}}],
        "livenessProbe": {
            "httpGet": {"path": path::HEALTHZ, "port": port_name},
            "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": path::READYZ, "port": port_name},
            "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 2,
        },
        "resources": resources,
        "securityContext": container_security(),
        "volumeMounts": volume_mounts(mv),
    });
    if let Some(p) = mv.spec.image_pull_policy {
        c["imagePullPolicy"] = json!(p.as_str());
    }
    c
}

/// `spec.selector` of a component's Deployment.
pub fn selector(mv: &Validated, component: &str) -> Value {
    json!({"matchLabels": selector_labels(mv, component)})
}
