//! The HTTP server Deployment.

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;

use multivac_contract::port;

use super::{app_default_resources, app_pod, metadata, placement, resources_or, typed};
use crate::error::Result;
use crate::reconcile::Validated;

/// Deployment `<mv>-server` running `multivac server`: the API on :8080
/// (`http`, the Service's), `/metrics` and `/zzz` on :9090 (`metrics`,
/// Prometheus's and `kubectl port-forward`'s; no Service exposes it).
pub(super) fn build(mv: &Validated) -> Result<Deployment> {
    let mut env = app_pod::env(mv, true);
    if mv.spec.server.public_zzz
        && let Some(env) = env.as_array_mut()
    {
        env.push(json!({"name": multivac_contract::env::PUBLIC_ZZZ, "value": "true"}));
    }
    let mut container = app_pod::container(
        mv,
        "server",
        "http",
        port::SERVER,
        env,
        resources_or(&mv.spec.server.resources, app_default_resources())?,
    );
    if let Some(ports) = container["ports"].as_array_mut() {
        ports.push(
            json!({"name": "metrics", "containerPort": port::SERVER_METRICS, "protocol": "TCP"}),
        );
    }
    let mut deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(mv, &mv.server_name(), "server"),
        "spec": {
            "replicas": mv.spec.server.replicas,
            "selector": app_pod::selector(mv, "server"),
            "template": app_pod::template(mv, "server", container, 30),
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
        assert_eq!(
            json_of(&build(&validated(&m)).unwrap()),
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
                        "metadata": {"labels": labels("server"), "annotations": {"multivac.io/config-hash": hash}},
                        "spec": {
                            "serviceAccountName": "mv-multivac",
                            "automountServiceAccountToken": false,
                            "securityContext": {
                                "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "imagePullSecrets": [],
                            "terminationGracePeriodSeconds": 30,
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
