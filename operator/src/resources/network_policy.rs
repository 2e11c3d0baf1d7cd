//! NetworkPolicies: Redis and MongoDB accept connections only from this
//! MultiVac's server and worker pods and from the operator (its scaler reads
//! the backlog from Redis; a credentials rotation changes the passwords in
//! both).

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{Value, json};

use super::{MONGODB_PORT, REDIS_PORT, metadata, selector_labels, typed};
use crate::error::Result;
use crate::validated::Validated;

fn app_peer(mv: &Validated) -> Value {
    json!({"podSelector": {"matchExpressions": [
        {"key": "app.kubernetes.io/name", "operator": "In", "values": ["multivac"]},
        {"key": "app.kubernetes.io/instance", "operator": "In", "values": [mv.name]},
        {"key": "app.kubernetes.io/component", "operator": "In", "values": ["server", "worker"]},
    ]}})
}

fn policy(
    mv: &Validated,
    component: &str,
    policy_name: &str,
    from: Vec<Value>,
    port: i32,
) -> Result<NetworkPolicy> {
    typed(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(mv, policy_name, component),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(mv, component)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": from, "ports": [{"protocol": "TCP", "port": port}]}],
        },
    }))
}

/// The operator's pods, in the namespace they run in.
fn operator_peer(operator_namespace: &str) -> Value {
    json!({
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": operator_namespace}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "multivac-operator"}},
    })
}

/// NetworkPolicy `<mv>-redis`.
pub fn redis(mv: &Validated, operator_namespace: &str) -> Result<NetworkPolicy> {
    policy(
        mv,
        "redis",
        &mv.redis_name(),
        vec![app_peer(mv), operator_peer(operator_namespace)],
        REDIS_PORT,
    )
}

/// NetworkPolicy `<mv>-mongodb`.
pub fn mongodb(mv: &Validated, operator_namespace: &str) -> Result<NetworkPolicy> {
    policy(
        mv,
        "mongodb",
        &mv.mongodb_name(),
        vec![app_peer(mv), operator_peer(operator_namespace)],
        MONGODB_PORT,
    )
}

#[cfg(test)]
mod tests {
    use super::super::testing::{json_of, labels, mv, owner, validated};
    use super::*;

    #[test]
    fn redis_admits_only_this_multivacs_app_pods_and_the_operator() {
        assert_eq!(
            json_of(&redis(&validated(&mv(json!({"image": "x"}))), "multivac-system").unwrap()),
            json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "mv-redis", "namespace": "ns", "labels": labels("redis"), "ownerReferences": owner()},
                "spec": {
                    "podSelector": {"matchLabels": {
                        "app.kubernetes.io/name": "multivac",
                        "app.kubernetes.io/instance": "mv",
                        "app.kubernetes.io/component": "redis",
                    }},
                    "policyTypes": ["Ingress"],
                    "ingress": [{
                        "from": [
                            {"podSelector": {"matchExpressions": [
                                {"key": "app.kubernetes.io/name", "operator": "In", "values": ["multivac"]},
                                {"key": "app.kubernetes.io/instance", "operator": "In", "values": ["mv"]},
                                {"key": "app.kubernetes.io/component", "operator": "In", "values": ["server", "worker"]},
                            ]}},
                            {
                                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "multivac-system"}},
                                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "multivac-operator"}},
                            },
                        ],
                        "ports": [{"protocol": "TCP", "port": 6379}],
                    }],
                },
            })
        );
    }

    #[test]
    fn mongodb_admits_only_this_multivacs_app_pods_and_the_operator() {
        let p = json_of(&mongodb(&validated(&mv(json!({"image": "x"}))), "op-ns").unwrap());
        assert_eq!(p["metadata"]["name"], "mv-mongodb");
        assert_eq!(
            p["spec"]["ingress"][0]["from"][1],
            json!({
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "op-ns"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "multivac-operator"}},
            })
        );
        assert_eq!(p["spec"]["ingress"][0]["from"].as_array().unwrap().len(), 2);
        assert_eq!(
            p["spec"]["ingress"][0]["from"][0]["podSelector"]["matchExpressions"][2]["values"],
            json!(["server", "worker"])
        );
        assert_eq!(
            p["spec"]["ingress"][0]["ports"],
            json!([{"protocol": "TCP", "port": 27017}])
        );
    }
}
