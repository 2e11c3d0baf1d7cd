//! Services: the server's (type and port from the spec) and the datastores' (ClusterIP).

use k8s_openapi::api::core::v1::Service;
use serde_json::json;

use super::{MONGODB_PORT, REDIS_PORT, metadata, selector_labels, typed};
use crate::crd::MultiVac;
use crate::error::Result;
use crate::validated::Validated;

fn service(
    mv: &Validated,
    name: &str,
    component: &str,
    type_: &str,
    port_name: &str,
    port: i32,
) -> Result<Service> {
    typed(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(mv, name, component),
        "spec": {
            "type": type_,
            "selector": selector_labels(mv, component),
            "ports": [{"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}],
        },
    }))
}

/// Service `<mv>-server` in front of the HTTP server: its public port only
/// (`http`, the API); the internal `metrics` port is not in it.
pub fn server(mv: &Validated) -> Result<Service> {
    let s = &mv.spec.server.service;
    let mut service = service(
        mv,
        &mv.server_name(),
        "server",
        s.type_.as_str(),
        "http",
        s.port,
    )?;
    if !s.annotations.is_empty() {
        service.metadata.annotations = Some(s.annotations.clone());
    }
    Ok(service)
}

/// Service `<mv>-redis`.
pub fn redis(mv: &Validated) -> Result<Service> {
    service(
        mv,
        &mv.redis_name(),
        "redis",
        "ClusterIP",
        "redis",
        REDIS_PORT,
    )
}

/// Service `<mv>-mongodb`.
pub fn mongodb(mv: &Validated) -> Result<Service> {
    service(
        mv,
        &mv.mongodb_name(),
        "mongodb",
        "ClusterIP",
        "mongodb",
        MONGODB_PORT,
    )
}

/// The in-cluster URL of the server, reported in `status.serviceUrl`.
pub(crate) fn server_url(mv: &MultiVac) -> Option<String> {
    let ns = mv.metadata.namespace.as_deref()?;
    let port = mv.spec.server.service.port;
    let host = format!("{}.{ns}.svc", mv.server_name());
    Some(if port == 80 {
        format!("http://{host}")
    } else {
        format!("http://{host}:{port}")
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{json_of, labels, mv, owner, validated};
    use super::*;

    #[test]
    fn server_service_follows_the_spec() {
        let m =
            mv(json!({"image": "x", "server": {"service": {"type": "NodePort", "port": 8000}}}));
        assert_eq!(
            json_of(&server(&validated(&m)).unwrap()),
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "mv-server", "namespace": "ns", "labels": labels("server"), "ownerReferences": owner()},
                "spec": {
                    "type": "NodePort",
                    "selector": {
                        "app.kubernetes.io/name": "multivac",
                        "app.kubernetes.io/instance": "mv",
                        "app.kubernetes.io/component": "server",
                    },
                    "ports": [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}],
                },
            })
        );
        assert_eq!(server_url(&m).unwrap(), "http://mv-server.ns.svc:8000");
        let lb = mv(json!({"server": {"service": {"type": "LoadBalancer",
            "annotations": {"service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"}}}}));
        assert_eq!(
            json_of(&server(&validated(&lb)).unwrap())["metadata"],
            json!({"name": "mv-server", "namespace": "ns", "labels": labels("server"), "ownerReferences": owner(),
                "annotations": {"service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"}})
        );
        assert_eq!(
            server_url(&mv(json!({"image": "x"}))).unwrap(),
            "http://mv-server.ns.svc"
        );
    }

    #[test]
    fn datastore_services_are_cluster_internal() {
        let m = mv(json!({"image": "x"}));
        let v = validated(&m);
        assert_eq!(
            json_of(&redis(&v).unwrap()),
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "mv-redis", "namespace": "ns", "labels": labels("redis"), "ownerReferences": owner()},
                "spec": {
                    "type": "ClusterIP",
                    "selector": {
                        "app.kubernetes.io/name": "multivac",
                        "app.kubernetes.io/instance": "mv",
                        "app.kubernetes.io/component": "redis",
                    },
                    "ports": [{"name": "redis", "port": 6379, "targetPort": "redis", "protocol": "TCP"}],
                },
            })
        );
        assert_eq!(
            json_of(&mongodb(&v).unwrap())["spec"]["ports"][0]["port"],
            27017
        );
    }
}
