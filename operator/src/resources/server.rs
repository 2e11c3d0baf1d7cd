//! The HTTP server Deployment.
//!
//! A server pod stops without failing a request: on SIGTERM it turns unready
//! and keeps serving for `spec.server.drainSeconds` (Services and load
//! balancers take it out meanwhile; its answers close their connections, so
//! kept-alive clients reconnect to another pod), then finishes what is in
//! flight within the request timeout. The app does this itself, so no
//! `preStop` hook is needed (the image has no shell for one to run, and a
//! hook that only sleeps would delay SIGTERM without the pod turning
//! unready). The grace period covers the drain, the request timeout and a
//! margin.

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};

use multivac_contract::{env, port};

use super::{app_default_resources, app_pod, metadata, placement, resources_or, typed};
use crate::error::Result;
use crate::validated::Validated;

/// The request timeout the operator gives the server
/// (`MULTIVAC_REQUEST_TIMEOUT_MS`), which bounds the requests in flight at
/// the end of a drain.
const REQUEST_TIMEOUT_SECONDS: i64 = 10;
/// Time beyond drain and request timeout before the kubelet kills the pod.
const GRACE_MARGIN_SECONDS: i64 = 5;

/// The server's own settings, beside what every app container gets.
fn server_env(mv: &Validated) -> Vec<Value> {
    let server = &mv.spec.server;
    let mut vars = vec![
        json!({"name": env::DRAIN_MS, "value": (i64::from(server.drain_seconds) * 1000).to_string()}),
        json!({"name": env::REQUEST_TIMEOUT_MS, "value": (REQUEST_TIMEOUT_SECONDS * 1000).to_string()}),
    ];
    if let Some(max) = server.max_backlog {
        vars.push(json!({"name": env::MAX_BACKLOG, "value": max.to_string()}));
    }
    if server.public_zzz {
        vars.push(json!({"name": env::PUBLIC_ZZZ, "value": "true"}));
    }
    vars
}

/// Deployment `<mv>-server` running `multivac server`: the API on :8080
/// (`http`, the Service's, and the probes'), `/metrics` and `/zzz` on :9090
/// (`metrics`, Prometheus's and `kubectl port-forward`'s; no Service exposes
/// it). A drain turns `/readyz` unready on both ports.
pub(super) fn build(mv: &Validated) -> Result<Deployment> {
    let mut vars = app_pod::env(mv, true);
    if let Value::Array(list) = &mut vars {
        list.extend(server_env(mv));
    }
    let mut container = app_pod::container(
        mv,
        "server",
        "http",
        port::SERVER,
        vars,
        resources_or(&mv.spec.server.resources, app_default_resources())?,
    );
    if let Some(ports) = container["ports"].as_array_mut() {
        ports.push(
            json!({"name": "metrics", "containerPort": port::SERVER_METRICS, "protocol": "TCP"}),
        );
    }
    let grace =
        i64::from(mv.spec.server.drain_seconds) + REQUEST_TIMEOUT_SECONDS + GRACE_MARGIN_SECONDS;
    let mut deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(mv, &mv.server_name(), "server"),
        "spec": {
            "replicas": mv.spec.server.replicas,
            "selector": app_pod::selector(mv, "server"),
            "template": app_pod::template(mv, "server", container, grace),
        },
    });
    placement::place(&mut deployment, &mv.spec.server.placement)?;
    typed(deployment)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{json_of, labels, mv, owner, validated};
    use super::*;
    use crate::resources::config_map;

    #[test]
    fn server_deployment_is_restricted_and_wired() {
        let m = mv(json!({"image": "multivac:1", "imagePullPolicy": "Always",
            "server": {"replicas": 2}, "apiTokenSecretRef": {"name": "tok"}}));
        let hash = config_map::hash(&validated(&m));
        let built = json_of(&build(&validated(&m)).unwrap());
        let secrets =
            &built["spec"]["template"]["metadata"]["annotations"]["multivac.io/secrets-hash"];
        assert!(secrets.as_str().is_some_and(|h| h.len() == 16), "{secrets}");
        assert_eq!(
            built,
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "mv-server", "namespace": "ns", "labels": labels("server"), "ownerReferences": owner()},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {
                        "app.kubernetes.io/name": "multivac",
                        "app.kubernetes.io/instance": "mv",
                        "app.kubernetes.io/component": "server",
                    }},
                    "template": {
                        "metadata": {"labels": labels("server"), "annotations": {"multivac.io/config-hash": hash, "multivac.io/secrets-hash": secrets}},
                        "spec": {
                            "serviceAccountName": "mv-multivac",
                            "automountServiceAccountToken": false,
                            "securityContext": {
                                "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "imagePullSecrets": [],
                            "terminationGracePeriodSeconds": 25,
                            "containers": [{
                                "name": "server",
                                "image": "multivac:1",
                                "imagePullPolicy": "Always",
                                "args": ["server"],
                                "ports": [
                                    {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                                    {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
                                ],
                                "env": [
                                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                    {"name": "MULTIVAC_REDIS_URL", "valueFrom": {"secretKeyRef": {"name": "mv-credentials", "key": "redis-url"}}},
                                    {"name": "MULTIVAC_MONGODB_URI", "valueFrom": {"secretKeyRef": {"name": "mv-credentials", "key": "mongodb-uri"}}},
                                    {"name": "MULTIVAC_API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "tok", "key": "token"}}},
                                    {"name": "MULTIVAC_DRAIN_MS", "value": "10000"},
                                    {"name": "MULTIVAC_REQUEST_TIMEOUT_MS", "value": "10000"},
                                ],
                                "envFrom": [{"configMapRef": {"name": "mv-config"}}],
                                "livenessProbe": {
                                    "httpGet": {"path": "/healthz", "port": "http"},
                                    "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3,
                                },
                                "readinessProbe": {
                                    "httpGet": {"path": "/readyz", "port": "http"},
                                    "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 2,
                                },
                                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                                "securityContext": {
                                    "allowPrivilegeEscalation": false,
                                    "capabilities": {"drop": ["ALL"]},
                                    "readOnlyRootFilesystem": true,
                                    "runAsNonRoot": true,
                                    "seccompProfile": {"type": "RuntimeDefault"},
                                },
                                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                            }],
                            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                        },
                    },
                },
            })
        );
    }

    #[test]
    fn drain_and_backlog_bound_follow_the_spec() {
        let m = mv(json!({"image": "x", "server": {"drainSeconds": 30, "maxBacklog": 50000}}));
        let built = json_of(&build(&validated(&m)).unwrap());
        let pod = &built["spec"]["template"]["spec"];
        assert_eq!(pod["terminationGracePeriodSeconds"], 45);
        let env = pod["containers"][0]["env"].as_array().unwrap();
        let value = |name: &str| {
            env.iter()
                .find(|e| e["name"] == name)
                .map(|e| e["value"].clone())
        };
        assert_eq!(value("MULTIVAC_DRAIN_MS"), Some(json!("30000")));
        assert_eq!(value("MULTIVAC_MAX_BACKLOG"), Some(json!("50000")));
        let none = mv(json!({"image": "x", "server": {"drainSeconds": 0}}));
        let built = json_of(&build(&validated(&none)).unwrap());
        assert_eq!(
            built["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
            15
        );
    }

    #[test]
    fn server_pods_are_placed_as_asked_and_zzz_is_public_only_when_asked() {
        let m = mv(json!({"server": {
            "publicZzz": true,
            "nodeSelector": {"pool": "web"},
            "tolerations": [{"key": "web", "operator": "Exists"}],
            "priorityClassName": "multivac-web",
            "podLabels": {"team": "entropy"},
            "podAnnotations": {"prometheus.io/scrape": "false"},
        }}));
        let built = json_of(&build(&validated(&m)).unwrap());
        let template = &built["spec"]["template"];
        let mut want_labels = labels("server");
        want_labels["team"] = json!("entropy");
        assert_eq!(template["metadata"]["labels"], want_labels);
        assert_eq!(
            template["metadata"]["annotations"]["prometheus.io/scrape"],
            "false"
        );
        assert!(template["metadata"]["annotations"]["multivac.io/config-hash"].is_string());
        assert_eq!(template["spec"]["nodeSelector"], json!({"pool": "web"}));
        assert_eq!(
            template["spec"]["tolerations"],
            json!([{"key": "web", "operator": "Exists"}])
        );
        assert_eq!(template["spec"]["priorityClassName"], "multivac-web");
        // The selector stays the operator's: the pods still match it.
        assert_eq!(
            built["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
            "server"
        );
        let container = &template["spec"]["containers"][0];
        assert_eq!(container["image"], crate::resources::testing::DEFAULT_IMAGE);
        let env = container["env"].as_array().unwrap();
        assert_eq!(
            env.last().unwrap(),
            &json!({"name": "MULTIVAC_PUBLIC_ZZZ", "value": "true"})
        );
        let private = mv(json!({}));
        let built = json_of(&build(&validated(&private)).unwrap());
        let env = built["spec"]["template"]["spec"]["containers"][0]["env"].clone();
        assert!(
            env.as_array()
                .unwrap()
                .iter()
                .all(|e| e["name"] != "MULTIVAC_PUBLIC_ZZZ"),
            "{env}"
        );
    }
}
