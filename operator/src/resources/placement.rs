//! The placement a component's spec asks for (`nodeSelector`, `tolerations`,
//! `affinity`, `topologySpreadConstraints`, `priorityClassName`, pod labels
//! and annotations), laid over the pod template of a built Deployment. The
//! operator's own labels and annotations win over the user's (the CRD already
//! refuses the overlap): the Services, NetworkPolicies and the
//! PodDisruptionBudget select the pods by those labels.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::crd::Placement;
use crate::error::Result;

/// Sets `placement` on the pod template of `deployment` (a Deployment's JSON).
/// Fields the user left empty are not written, so a spec without placement
/// builds the same object as before.
pub(super) fn place(deployment: &mut Value, placement: &Placement) -> Result<()> {
    let template = &mut deployment["spec"]["template"];
    add_missing(&mut template["metadata"], "labels", &placement.pod_labels);
    add_missing(
        &mut template["metadata"],
        "annotations",
        &placement.pod_annotations,
    );
    let spec = &mut template["spec"];
    if !placement.node_selector.is_empty() {
        spec["nodeSelector"] = json!(placement.node_selector);
    }
    if !placement.tolerations.is_empty() {
        spec["tolerations"] = serde_json::to_value(&placement.tolerations)?;
    }
    if let Some(affinity) = &placement.affinity {
        spec["affinity"] = serde_json::to_value(affinity)?;
    }
    if !placement.topology_spread_constraints.is_empty() {
        spec["topologySpreadConstraints"] =
            serde_json::to_value(&placement.topology_spread_constraints)?;
    }
    if let Some(class) = &placement.priority_class_name {
        spec["priorityClassName"] = json!(class);
    }
    Ok(())
}

/// Adds to the map `metadata[field]` (the operator's) the user's entries it
/// does not have.
fn add_missing(metadata: &mut Value, field: &str, users: &BTreeMap<String, String>) {
    if users.is_empty() {
        return;
    }
    let operators = &mut metadata[field];
    if !operators.is_object() {
        *operators = json!({});
    }
    if let Some(map) = operators.as_object_mut() {
        for (key, value) in users {
            map.entry(key.clone()).or_insert_with(|| json!(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(v: Value) -> Placement {
        serde_json::from_value(v).unwrap()
    }

    fn deployment() -> Value {
        json!({"spec": {"template": {
            "metadata": {"labels": {"app.kubernetes.io/component": "server"}},
            "spec": {"containers": []},
        }}})
    }

    #[test]
    fn every_field_lands_in_the_pod_template() {
        let pod_fields = json!({
            "nodeSelector": {"disktype": "ssd"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "multivac", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}]}]}}},
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "server"}}}],
            "priorityClassName": "multivac-high",
        });
        let mut asked = pod_fields.clone();
        asked["podAnnotations"] = json!({"sidecar.istio.io/inject": "false"});
        asked["podLabels"] = json!({"team": "entropy"});
        let mut d = deployment();
        place(&mut d, &placement(asked)).unwrap();
        let mut spec = pod_fields;
        spec["containers"] = json!([]);
        assert_eq!(
            d,
            json!({"spec": {"template": {
                "metadata": {
                    "labels": {"app.kubernetes.io/component": "server", "team": "entropy"},
                    "annotations": {"sidecar.istio.io/inject": "false"},
                },
                "spec": spec,
            }}})
        );
    }

    #[test]
    fn nothing_asked_changes_nothing() {
        let mut d = deployment();
        place(&mut d, &Placement::default()).unwrap();
        assert_eq!(d, deployment());
    }

    /// The CRD refuses such labels; should one get through (an older CRD
    /// without the rule, and the operator's own check bypassed), the
    /// operator's value still wins, so the selectors keep matching.
    #[test]
    fn the_operators_labels_and_annotations_win() {
        let mut d = deployment();
        d["spec"]["template"]["metadata"]["annotations"] = json!({"multivac.io/config-hash": "h"});
        place(
            &mut d,
            &placement(json!({
                "podLabels": {"app.kubernetes.io/component": "worker", "x": "1"},
                "podAnnotations": {"multivac.io/config-hash": "forged", "y": "2"},
            })),
        )
        .unwrap();
        let meta = &d["spec"]["template"]["metadata"];
        assert_eq!(
            meta["labels"],
            json!({"app.kubernetes.io/component": "server", "x": "1"})
        );
        assert_eq!(
            meta["annotations"],
            json!({"multivac.io/config-hash": "h", "y": "2"})
        );
    }
}
