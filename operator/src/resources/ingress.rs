//! The server's optional Ingress: the API's paths only (`/` exactly and
//! `/multivac...`, plus `/zzz` when it is public) to the Service's `http`
//! port; `/metrics` and the probes are never routed.

use k8s_openapi::api::networking::v1::Ingress;
use multivac_contract::path;
use serde_json::{Value, json};

use super::{metadata, typed};
use crate::crd::IngressSpec;
use crate::error::Result;
use crate::validated::Validated;

/// Ingress `<mv>-server`.
pub(super) fn build(mv: &Validated, spec: &IngressSpec) -> Result<Ingress> {
    let service = mv.server_name();
    let route = |path: &str, kind: &str| -> Value {
        json!({"path": path, "pathType": kind, "backend": {"service": {"name": service, "port": {"name": "http"}}}})
    };
    let mut paths = vec![
        route(path::WELCOME, "Exact"),
        route(path::QUESTION, "Prefix"),
    ];
    if mv.spec.server.public_zzz {
        paths.push(route(path::ZZZ, "Prefix"));
    }
    let mut rule = json!({"http": {"paths": paths}});
    if let Some(host) = &spec.host {
        rule["host"] = json!(host);
    }
    let mut ingress = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata(mv, &service, "server"),
        "spec": {"rules": [rule]},
    });
    if !spec.annotations.is_empty() {
        ingress["metadata"]["annotations"] = json!(spec.annotations);
    }
    if let Some(class) = &spec.ingress_class_name {
        ingress["spec"]["ingressClassName"] = json!(class);
    }
    if let Some(secret) = &spec.tls_secret_name {
        ingress["spec"]["tls"] =
            json!([{"hosts": spec.host.iter().collect::<Vec<_>>(), "secretName": secret}]);
    }
    typed(ingress)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{json_of, labels, mv, owner, validated};
    use super::*;

    fn built(spec: Value) -> Value {
        let m = mv(spec);
        let v = validated(&m);
        json_of(&build(&v, v.spec.server.ingress.as_ref().unwrap()).unwrap())
    }

    fn backend(path: &str, kind: &str) -> Value {
        json!({"path": path, "pathType": kind, "backend": {"service": {"name": "mv-server", "port": {"name": "http"}}}})
    }

    #[test]
    fn ingress_routes_the_api_over_tls_for_its_host() {
        assert_eq!(
            built(
                json!({"server": {"ingress": {"host": "mv.example.com", "ingressClassName": "nginx",
                "tlsSecretName": "mv-tls", "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"}}}})
            ),
            json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": "mv-server", "namespace": "ns", "labels": labels("server"), "ownerReferences": owner(),
                    "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"}},
                "spec": {
                    "ingressClassName": "nginx",
                    "tls": [{"hosts": ["mv.example.com"], "secretName": "mv-tls"}],
                    "rules": [{"host": "mv.example.com", "http": {"paths": [
                        backend("/", "Exact"),
                        backend("/multivac", "Prefix"),
                    ]}}],
                },
            })
        );
    }

    #[test]
    fn zzz_is_routed_only_when_public_and_a_bare_ingress_takes_every_host() {
        assert_eq!(
            built(json!({"server": {"publicZzz": true, "ingress": {}}})),
            json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": "mv-server", "namespace": "ns", "labels": labels("server"), "ownerReferences": owner()},
                "spec": {"rules": [{"http": {"paths": [
                    backend("/", "Exact"),
                    backend("/multivac", "Prefix"),
                    backend("/zzz", "Prefix"),
                ]}}]},
            })
        );
    }
}
