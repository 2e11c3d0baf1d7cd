//! The server's PodDisruptionBudget (only with more than one replica: with
//! one, a PDB would block node drains forever).

use serde_json::{Value, json};

use super::{metadata, selector_labels};
use crate::crd::MultiVac;
use crate::error::Result;

/// PodDisruptionBudget `<mv>-server`: at most one server pod evicted at a time.
pub fn build(mv: &MultiVac) -> Result<Value> {
    Ok(json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(mv, &mv.server_name(), "server")?,
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(mv, "server")},
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{labels, mv, owner};
    use super::*;

    #[test]
    fn pdb_keeps_all_but_one_server() {
        assert_eq!(
            build(&mv(json!({"image": "x", "server": {"replicas": 3}}))).unwrap(),
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
