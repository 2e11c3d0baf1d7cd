//! Writes the children, each only when needed. Every applied object carries a
//! hash of itself in an annotation; an object is re-applied when the hash
//! differs (the spec changed, including removed fields) or when a field it
//! sets drifted in the live object (someone edited it). A healthy, unchanged
//! MultiVac therefore costs reads only, never writes.
//!
//! Only this MultiVac's objects are written ([`super::ownership`]); every
//! child gets its own outcome, so one the API server refuses, or one that
//! belongs to someone else, stops nothing but itself.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Map, Value};

use super::ownership::{Claim, Owner, claim, conflict_advice, settle_patch};
use super::quantity;
use crate::cluster::{Cluster, Object};
use crate::error::Error;
use crate::kind::Kind;
use crate::resources::{Child, ChildRef, Children, stable_hash};

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

/// Why one child is not as built.
#[derive(Debug)]
pub(crate) enum Problem {
    /// An object of its name that is not this MultiVac's: left untouched.
    Conflict(String),
    /// The API server refused it (invalid, forbidden by admission, RBAC or a
    /// quota, an immutable field): retrying will not help until someone
    /// changes the MultiVac or the namespace's rules.
    Rejected(String),
    /// Its old object is being deleted; it is written once that is done.
    Waiting(String),
    /// Anything else (the API server unreachable, a timeout, a conflict
    /// between writers): worth retrying soon.
    Failed(Error),
}

impl<E: Into<Error>> From<E> for Problem {
    fn from(e: E) -> Self {
        match e.into() {
            Error::Kube(kube::Error::Api(s)) if refused(s.code) => Self::Rejected(format!(
                "refused by the API server ({} {}): {}",
                s.code, s.reason, s.message
            )),
            other => Self::Failed(other),
        }
    }
}

/// Answers that repeat until someone changes something: bad request,
/// forbidden (admission, quota, RBAC), invalid (including immutable fields).
fn refused(code: u16) -> bool {
    matches!(code, 400 | 403 | 422)
}

/// One child's outcome: what was done, or why not.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) child: ChildRef,
    pub(crate) result: Result<Change, Problem>,
}

/// What [`apply`] did, child by child, in order.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    pub(crate) outcomes: Vec<Outcome>,
    /// The live Deployments after the apply, for the status.
    pub(crate) rollouts: Vec<Rollout>,
}

/// How far one Deployment got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rollout {
    /// `server`, `worker`, `redis` or `mongodb`.
    pub(crate) component: String,
    pub(crate) name: String,
    /// `spec.replicas` (the scaler's for workers).
    pub(crate) replicas: i32,
    pub(crate) ready: i32,
    pub(crate) available: i32,
    /// The Deployment controller saw the current spec and every pod is of it.
    pub(crate) up_to_date: bool,
}

impl Rollout {
    /// Reads a live Deployment; its component comes from its labels.
    pub(crate) fn from_live(live: &Deployment) -> Self {
        let replicas = live.spec.replicas.unwrap_or(1);
        let status = live.status.clone().unwrap_or_default();
        let generation = live.metadata.generation.unwrap_or(0);
        let observed = status.observed_generation.unwrap_or(-1);
        Self {
            component: live
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app.kubernetes.io/component").cloned())
                .unwrap_or_default(),
            name: live.metadata.name.clone().unwrap_or_default(),
            replicas,
            ready: status.ready_replicas.unwrap_or(0),
            available: status.available_replicas.unwrap_or(0),
            up_to_date: observed >= generation
                && status.updated_replicas.unwrap_or(0) >= replicas
                && status.replicas.unwrap_or(0) <= replicas,
        }
    }

    /// Every wanted pod runs the current template and is available.
    pub(crate) fn done(&self) -> bool {
        self.up_to_date && self.available >= self.replicas
    }
}

impl Applied {
    /// The children that were written, with what was done to them.
    pub(crate) fn changes(&self) -> impl Iterator<Item = (&ChildRef, Change)> {
        self.outcomes.iter().filter_map(|o| match o.result {
            Ok(Change::Unchanged) | Err(_) => None,
            Ok(change) => Some((&o.child, change)),
        })
    }

    /// The children left as they are for a reason the status reports
    /// (everything but [`Problem::Failed`]).
    pub(crate) fn blocked(&self) -> impl Iterator<Item = (&ChildRef, &Problem)> {
        self.outcomes.iter().filter_map(|o| match &o.result {
            Err(Problem::Failed(_)) | Ok(_) => None,
            Err(p) => Some((&o.child, p)),
        })
    }

    /// The first error worth retrying soon, if any child had one.
    pub(crate) fn take_failure(&mut self) -> Option<Error> {
        self.outcomes.iter_mut().find_map(|o| {
            match std::mem::replace(&mut o.result, Ok(Change::Unchanged)) {
                Err(Problem::Failed(e)) => Some(e),
                other => {
                    o.result = other;
                    None
                }
            }
        })
    }

    fn record(&mut self, child: ChildRef, result: Result<Change, Problem>) {
        self.outcomes.push(Outcome { child, result });
    }
}

/// Creates the credentials Secret if it must be (or brings an existing one's
/// metadata to what `spec.retention` asks), applies every child that differs
/// from its live object, and deletes the unwanted children this MultiVac
/// controls. `credentials` is the live credentials Secret's metadata, as
/// dereferenced. Every child is attempted, whatever happened to the others.
pub(crate) async fn apply(
    cluster: &Cluster<'_>,
    children: &Children,
    owner: &Owner,
    credentials: Option<&ObjectMeta>,
) -> Applied {
    let mut applied = Applied::default();
    if let Some(desired) = &children.credentials_meta {
        let child = ChildRef::new(Kind::Secret, desired.name.clone().unwrap_or_default());
        let result = ensure_credentials(cluster, children, desired, credentials, owner).await;
        applied.record(child, result);
    }
    for child in &children.apply {
        let result = ensure_child(cluster, child, owner, &mut applied.rollouts).await;
        applied.record(child.child_ref(), result);
    }
    for unwanted in &children.remove {
        let result = remove_if_owned(cluster, unwanted, owner).await;
        applied.record(unwanted.clone(), result);
    }
    applied
}

/// The credentials Secret: created when absent (its data is never
/// rewritten afterwards); when it exists and is this MultiVac's, its labels,
/// owner annotation and ownerReference are settled.
async fn ensure_credentials(
    cluster: &Cluster<'_>,
    children: &Children,
    desired: &ObjectMeta,
    live: Option<&ObjectMeta>,
    owner: &Owner,
) -> Result<Change, Problem> {
    let name = desired.name.clone().unwrap_or_default();
    match (&children.credentials, live) {
        // Another writer (an older leader) may have won the race: its values
        // are kept, and the next reconcile checks whose it is.
        (Some(secret), _) => Ok(match cluster.create(secret).await? {
            true => Change::Created,
            false => Change::Unchanged,
        }),
        (None, Some(live)) => {
            check(Kind::Secret, live, owner)?;
            match settle_patch(live, desired, owner) {
                Some(patch) => {
                    cluster.patch_metadata(Kind::Secret, &name, &patch).await?;
                    Ok(Change::Updated)
                }
                None => Ok(Change::Unchanged),
            }
        }
        (None, None) => Ok(Change::Unchanged),
    }
}

async fn ensure_child(
    cluster: &Cluster<'_>,
    child: &Child,
    owner: &Owner,
    rollouts: &mut Vec<Rollout>,
) -> Result<Change, Problem> {
    let kind = child.child_ref().kind;
    Ok(match child {
        Child::ServiceAccount(o) => ensure(cluster, kind, o, owner).await?.0,
        Child::ConfigMap(o) => ensure(cluster, kind, o, owner).await?.0,
        Child::Deployment(o) => {
            let (change, live) = ensure(cluster, kind, o, owner).await?;
            rollouts.push(Rollout::from_live(&live));
            change
        }
        Child::Service(o) => ensure(cluster, kind, o, owner).await?.0,
        Child::PersistentVolumeClaim(o) => ensure(cluster, kind, o, owner).await?.0,
        Child::NetworkPolicy(o) => ensure(cluster, kind, o, owner).await?.0,
        Child::PodDisruptionBudget(o) => ensure(cluster, kind, o, owner).await?.0,
        Child::Ingress(o) => ensure(cluster, kind, o, owner).await?.0,
    })
}

/// Applies `built` unless the live object already matches it or is not this
/// MultiVac's; returns what was done and the live object afterwards.
async fn ensure<K: Object>(
    cluster: &Cluster<'_>,
    kind: Kind,
    built: &K,
    owner: &Owner,
) -> Result<(Change, K), Problem> {
    let name = built.meta().name.clone().unwrap_or_default();
    let object = with_hash(serde_json::to_value(built)?);
    let change = match cluster.get::<K>(&name).await? {
        Some(live) => {
            check(kind, live.meta(), owner)?;
            if is_subset(&object, &serde_json::to_value(&live)?) {
                return Ok((Change::Unchanged, live));
            }
            Change::Updated
        }
        // Absent as far as the reads go; an apply would take over an object
        // the reads cannot see (a cache holds only labelled objects), so the
        // API server itself is asked before creating.
        None => match cluster.live_metadata(kind, &name).await? {
            Some(meta) => {
                check(kind, &meta, owner)?;
                Change::Updated
            }
            None => Change::Created,
        },
    };
    Ok((change, cluster.apply(&name, &object).await?))
}

/// Ok when the live object of `kind` with `meta` is this MultiVac's.
fn check(kind: Kind, meta: &ObjectMeta, owner: &Owner) -> Result<(), Problem> {
    match claim(kind, meta, owner) {
        Claim::Ours => Ok(()),
        Claim::Foreign(why) => Err(Problem::Conflict(format!(
            "exists and is not this MultiVac's ({why}): {}",
            conflict_advice(kind, owner)
        ))),
        Claim::Leaving(why) => Err(Problem::Waiting(format!(
            "is not written until its old object is gone ({why})"
        ))),
    }
}

/// Deletes an object this MultiVac no longer wants, if it exists and the
/// MultiVac controls it (never something a user created under that name).
async fn remove_if_owned(
    cluster: &Cluster<'_>,
    child: &ChildRef,
    owner: &Owner,
) -> Result<Change, Problem> {
    let Some(meta) = cluster.metadata(child.kind, &child.name).await? else {
        return Ok(Change::Unchanged);
    };
    if claim(child.kind, &meta, owner) == Claim::Ours
        && cluster.delete(child.kind, &child.name).await?
    {
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
