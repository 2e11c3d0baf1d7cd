//! Writes the children, each only when needed. Every applied object carries a
//! hash of itself in an annotation; an object is re-applied when the hash
//! differs (the spec changed, including removed fields) or when a field it
//! sets drifted in the live object (someone edited it). A healthy, unchanged
//! MultiVac therefore costs reads only, never writes.

use serde_json::{Map, Value};

use super::cluster::{Cluster, Object};
use super::quantity;
use super::status::Rollout;
use crate::error::Result;
use crate::resources::{Child, ChildRef, Children, Kind, stable_hash};

/// Annotation holding the hash of the object as the operator last applied it.
pub(crate) const APPLIED_HASH_ANNOTATION: &str = "multivac.io/applied-hash";

/// What the apply did to one child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    Created,
    Updated,
    /// Already as built; or, for a child to remove, absent or not this MultiVac's.
    Unchanged,
    Removed,
}

/// One child's outcome: what was done, or why the API server refused it.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) child: ChildRef,
    pub(crate) result: Result<Change>,
}

/// What [`apply`] did, child by child, in order.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    pub(crate) outcomes: Vec<Outcome>,
    /// The live Deployments after the apply, for the status.
    pub(crate) rollouts: Vec<Rollout>,
}

impl Applied {
    /// The children that were written, with what was done to them.
    pub(crate) fn changes(&self) -> impl Iterator<Item = (&ChildRef, Change)> {
        self.outcomes.iter().filter_map(|o| match o.result {
            Ok(Change::Unchanged) | Err(_) => None,
            Ok(change) => Some((&o.child, change)),
        })
    }

    /// The rollouts, or the error of the child that stopped the apply.
    pub(crate) fn into_rollouts(self) -> Result<Vec<Rollout>> {
        match self.outcomes.into_iter().find_map(|o| o.result.err()) {
            Some(e) => Err(e),
            None => Ok(self.rollouts),
        }
    }

    /// Records an outcome; false when it is an error (the apply stops there).
    fn record(&mut self, child: ChildRef, result: Result<Change>) -> bool {
        let ok = result.is_ok();
        self.outcomes.push(Outcome { child, result });
        ok
    }
}

/// Creates the credentials Secret if it must be, applies every child that
/// differs from its live object, and deletes the unwanted children this
/// MultiVac (`owner_uid`) controls. Stops at the first child the API server
/// refuses.
pub(crate) async fn apply(cluster: &Cluster<'_>, children: &Children, owner_uid: &str) -> Applied {
    let mut applied = Applied::default();
    if let Some(secret) = &children.credentials {
        let child = ChildRef::new(
            Kind::Secret,
            secret.metadata.name.clone().unwrap_or_default(),
        );
        // Another writer (an older leader) may have won the race: its values are kept.
        let result = cluster.create(secret).await.map(|created| match created {
            true => Change::Created,
            false => Change::Unchanged,
        });
        if !applied.record(child, result) {
            return applied;
        }
    }
    for child in &children.apply {
        let result = ensure_child(cluster, child, &mut applied.rollouts).await;
        if !applied.record(child.child_ref(), result) {
            return applied;
        }
    }
    for unwanted in &children.remove {
        let result = remove_if_owned(cluster, unwanted, owner_uid).await;
        if !applied.record(unwanted.clone(), result) {
            return applied;
        }
    }
    applied
}

async fn ensure_child(
    cluster: &Cluster<'_>,
    child: &Child,
    rollouts: &mut Vec<Rollout>,
) -> Result<Change> {
    Ok(match child {
        Child::ServiceAccount(o) => ensure(cluster, o).await?.0,
        Child::ConfigMap(o) => ensure(cluster, o).await?.0,
        Child::Deployment(o) => {
            let (change, live) = ensure(cluster, o).await?;
            rollouts.push(Rollout::from_live(&live));
            change
        }
        Child::Service(o) => ensure(cluster, o).await?.0,
        Child::PersistentVolumeClaim(o) => ensure(cluster, o).await?.0,
        Child::NetworkPolicy(o) => ensure(cluster, o).await?.0,
        Child::PodDisruptionBudget(o) => ensure(cluster, o).await?.0,
    })
}

/// Applies `built` unless the live object already matches it; returns what
/// was done and the live object afterwards.
async fn ensure<K: Object>(cluster: &Cluster<'_>, built: &K) -> Result<(Change, K)> {
    let name = built.meta().name.clone().unwrap_or_default();
    let object = with_hash(serde_json::to_value(built)?);
    let live = cluster.get::<K>(&name).await?;
    let unchanged = match &live {
        Some(l) => is_subset(&object, &serde_json::to_value(l)?),
        None => false,
    };
    match live {
        Some(l) if unchanged => Ok((Change::Unchanged, l)),
        Some(_) => Ok((Change::Updated, cluster.apply(&name, &object).await?)),
        None => Ok((Change::Created, cluster.apply(&name, &object).await?)),
    }
}

/// Deletes an object this MultiVac no longer wants, if it exists and the
/// MultiVac controls it (never something a user created under that name).
async fn remove_if_owned(
    cluster: &Cluster<'_>,
    child: &ChildRef,
    owner_uid: &str,
) -> Result<Change> {
    let Some(meta) = cluster.metadata(child.kind, &child.name).await? else {
        return Ok(Change::Unchanged);
    };
    let owned = meta
        .owner_references
        .unwrap_or_default()
        .iter()
        .any(|o| o.uid == owner_uid && o.controller == Some(true));
    if owned && cluster.delete(child.kind, &child.name).await? {
        Ok(Change::Removed)
    } else {
        Ok(Change::Unchanged)
    }
}

/// Adds the applied-hash annotation, computed over the object without it with
/// its keys sorted: the same object hashes the same whichever way its JSON
/// was built (serde_json keeps insertion order when another crate in the
/// build enables `preserve_order`).
pub(crate) fn with_hash(mut object: Value) -> Value {
    let hash = stable_hash(&sorted(&object).to_string());
    let meta = &mut object["metadata"];
    if !meta["annotations"].is_object() {
        meta["annotations"] = Value::Object(Default::default());
    }
    meta["annotations"][APPLIED_HASH_ANNOTATION] = Value::String(hash);
    object
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect::<Map<_, _>>(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Whether the live object already is what `desired` asks for: every field
/// of `desired` has the same value in `live` (absent and empty count as equal,
/// the API server drops empty lists and maps; resource quantities compare by
/// amount, the API server rewrites them in canonical form). Fields the API
/// server or other managers add to `live` are ignored.
pub(crate) fn is_subset(desired: &Value, live: &Value) -> bool {
    subset(desired, live, false)
}

/// [`is_subset`]; `quantities`: the values here are resource quantities.
fn subset(desired: &Value, live: &Value, quantities: bool) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(k, dv)| match l.get(k) {
            Some(lv) => subset(dv, lv, quantities || quantity::holds_quantities(k)),
            None => is_empty(dv),
        }),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(dv, lv)| subset(dv, lv, quantities))
        }
        (Value::Number(d), Value::Number(l)) => d.as_f64() == l.as_f64(),
        (Value::String(d), Value::String(l)) if quantities => quantity::same_amount(d, l),
        (d, Value::Null) => is_empty(d),
        (d, l) => d == l,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_ignores_server_added_fields_and_empty_values() {
        let desired = json!({"metadata": {"name": "a", "labels": {"x": "1"}},
            "spec": {"replicas": 1, "imagePullSecrets": [], "ports": [{"port": 80}]}});
        let live = json!({"metadata": {"name": "a", "uid": "u", "labels": {"x": "1", "y": "2"}},
            "spec": {"replicas": 1.0, "ports": [{"port": 80, "protocol": "TCP"}]},
            "status": {"ready": 1}});
        assert!(is_subset(&desired, &live));
    }

    #[test]
    fn subset_sees_drift() {
        let desired = json!({"spec": {"replicas": 2, "ports": [{"port": 80}]}});
        assert!(!is_subset(
            &desired,
            &json!({"spec": {"replicas": 1, "ports": [{"port": 80}]}})
        ));
        assert!(!is_subset(
            &desired,
            &json!({"spec": {"replicas": 2, "ports": [{"port": 80}, {"port": 81}]}})
        ));
        assert!(!is_subset(
            &desired,
            &json!({"spec": {"ports": [{"port": 80}]}})
        ));
        assert!(!is_subset(&json!({"a": "x"}), &json!({"a": null})));
    }

    #[test]
    fn subset_compares_resource_quantities_by_amount_and_nothing_else() {
        let desired = json!({"spec": {"containers": [{"resources": {
            "requests": {"cpu": "0.5", "memory": "1024Mi"}, "limits": {"memory": "1.5Gi"}}}],
            "volumes": [{"emptyDir": {"sizeLimit": "1000Mi"}}],
            "env": [{"name": "A", "value": "0.5"}]}});
        let live = json!({"spec": {"containers": [{"resources": {
            "requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1536Mi"}}}],
            "volumes": [{"emptyDir": {"sizeLimit": "1000Mi"}}],
            "env": [{"name": "A", "value": "0.5"}]}});
        assert!(is_subset(&desired, &live));
        let mut more = live.clone();
        more["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("501m");
        assert!(!is_subset(&desired, &more), "a different amount is drift");
        // Elsewhere, strings are compared as they are.
        let mut env = live.clone();
        env["spec"]["env"][0]["value"] = json!("500m");
        assert!(!is_subset(&desired, &env));
    }

    #[test]
    fn hash_changes_with_the_object_and_is_ignored_when_computed() {
        let a = with_hash(json!({"metadata": {"name": "a"}, "spec": {"x": 1}}));
        let b = with_hash(json!({"metadata": {"name": "a"}, "spec": {"x": 2}}));
        let h = |v: &Value| v["metadata"]["annotations"][APPLIED_HASH_ANNOTATION].clone();
        assert_ne!(h(&a), h(&b));
        assert_eq!(
            h(&a),
            h(&with_hash(
                json!({"metadata": {"name": "a"}, "spec": {"x": 1}})
            ))
        );
        // A removed field changes the hash, so it is re-applied (and SSA drops it).
        assert_ne!(
            h(&a),
            h(&with_hash(json!({"metadata": {"name": "a"}, "spec": {}})))
        );
    }

    #[test]
    fn hash_ignores_the_order_keys_were_inserted_in() {
        let mut reversed = Map::new();
        reversed.insert("spec".into(), json!({"y": 1, "x": [{"b": 2, "a": 1}]}));
        reversed.insert("metadata".into(), json!({"name": "a"}));
        let h = |v: Value| with_hash(v)["metadata"]["annotations"][APPLIED_HASH_ANNOTATION].clone();
        assert_eq!(
            h(Value::Object(reversed)),
            h(json!({"metadata": {"name": "a"}, "spec": {"x": [{"a": 1, "b": 2}], "y": 1}}))
        );
        // The figure children already carry: sorted keys, as before.
        assert_eq!(
            h(json!({"metadata": {"name": "a"}, "spec": {"x": 1}})),
            json!(stable_hash(r#"{"metadata":{"name":"a"},"spec":{"x":1}}"#))
        );
    }
}
