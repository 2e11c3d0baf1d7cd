//! The server's PodDisruptionBudget (only with more than one replica: with
//! one, a PDB would block node drains forever).

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::json;

use super::{metadata, selector_labels, typed};
use crate::error::Result;
use crate::validated::Validated;

/// PodDisruptionBudget `<mv>-server`: at most one server pod evicted at a time.
pub(super) fn build(mv: &Validated) -> Result<PodDisruptionBudget> {
    typed(json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(mv, &mv.server_name(), "server"),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(mv, "server")},
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{json_of, labels, mv, owner, validated};
    use super::*;

    #[test]
    fn pdb_keeps_all_but_one_server() {
        let m = mv(json!({"image": "x", "server": {"replicas": 3}}));
        assert_eq!(
            json_of(&build(&validated(&m)).unwrap()),
            json!({
                "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {"name": "mv-server", "namespace": "ns", "labels": labels("server"), "ownerReferences": owner()},
                "spec": {
                    "maxUnavailable": 1,
                    "selector": {"matchLabels": {
                        "app.kubernetes.io/name": "multivac",
                        "app.kubernetes.io/instance": "mv",
                        "app.kubernetes.io/component": "server",
                    }},
                },
            })
        );
    }
}
