//! Server-side apply that writes only when needed. Every desired object
//! carries a hash of itself in an annotation; an object is re-applied when
//! the hash differs (the spec changed, including removed fields) or when a
//! field it sets drifted in the live object (someone edited it). A healthy,
//! unchanged MultiVac therefore costs reads only, never writes.

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use serde_json::Value;

use crate::context::Context;
use crate::crd::FIELD_MANAGER;
use crate::error::Result;
use crate::resources::{Desired, stable_hash};

/// Annotation holding the hash of the object as the operator last applied it.
pub const APPLIED_HASH_ANNOTATION: &str = "multivac.io/applied-hash";

/// What [`ensure`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Created,
    Updated,
}

/// Adds the applied-hash annotation (computed over the object without it).
pub fn with_hash(mut object: Value) -> Value {
    let hash = stable_hash(&object.to_string());
    let meta = &mut object["metadata"];
    if !meta["annotations"].is_object() {
        meta["annotations"] = Value::Object(Default::default());
    }
    meta["annotations"][APPLIED_HASH_ANNOTATION] = Value::String(hash);
    object
}

/// Whether the live object already is what `desired` asks for: every field
/// of `desired` has the same value in `live` (absent and empty count as equal,
/// the API server drops empty lists and maps). Fields the API server or other
/// managers add to `live` are ignored.
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(k, dv)| match l.get(k) {
            Some(lv) => is_subset(dv, lv),
            None => is_empty(dv),
        }),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(dv, lv)| is_subset(dv, lv))
        }
        (Value::Number(d), Value::Number(l)) => d.as_f64() == l.as_f64(),
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

fn api(ctx: &Context, resource: &ApiResource, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(ctx.client.clone(), namespace, resource)
}

/// Applies `desired` unless the live object already matches. Returns the
/// outcome and the live object afterwards (its status feeds the MultiVac's).
pub async fn ensure(
    ctx: &Context,
    namespace: &str,
    desired: &Desired,
) -> Result<(Outcome, DynamicObject)> {
    let api = api(ctx, &desired.resource, namespace);
    let object = with_hash(desired.object.clone());
    let live = api.get_opt(&desired.name).await?;
    if let Some(live) = &live
        && is_subset(&object, &serde_json::to_value(live)?)
    {
        return Ok((Outcome::Unchanged, live.clone()));
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = api
        .patch(&desired.name, &params, &Patch::Apply(&object))
        .await?;
    ctx.metrics.write(&desired.resource.kind);
    let outcome = if live.is_some() {
        Outcome::Updated
    } else {
        Outcome::Created
    };
    Ok((outcome, applied))
}

/// Creates `object` unless an object of that name exists; never overwrites
/// (used for the generated Secret). Returns whether it created it.
pub async fn create_if_absent(
    ctx: &Context,
    namespace: &str,
    resource: &ApiResource,
    name: &str,
    object: impl FnOnce() -> Result<Value>,
) -> Result<bool> {
    let api = api(ctx, resource, namespace);
    if api.get_metadata_opt(name).await?.is_some() {
        return Ok(false);
    }
    let obj: DynamicObject = serde_json::from_value(object()?)?;
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api.create(&params, &obj).await {
        Ok(_) => {
            ctx.metrics.write(&resource.kind);
            Ok(true)
        }
        // Another reconcile (an older leader) won the race: keep its values.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Deletes an object this MultiVac no longer wants, if it exists and the
/// MultiVac controls it (never something a user created under that name).
pub async fn remove_if_owned(
    ctx: &Context,
    namespace: &str,
    resource: &ApiResource,
    name: &str,
    owner_uid: &str,
) -> Result<bool> {
    let api = api(ctx, resource, namespace);
    let Some(meta) = api.get_metadata_opt(name).await? else {
        return Ok(false);
    };
    let owned = meta
        .metadata
        .owner_references
        .unwrap_or_default()
        .iter()
        .any(|o| o.uid == owner_uid && o.controller == Some(true));
    if !owned {
        return Ok(false);
    }
    match api.delete(name, &Default::default()).await {
        Ok(_) => {
            ctx.metrics.write(&resource.kind);
            Ok(true)
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
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
}
