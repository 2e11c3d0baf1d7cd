//! Which existing objects are this MultiVac's. The operator writes (or
//! deletes) a child only when it is: an object of the same name that someone
//! else made is left exactly as it is and reported as a conflict.
//!
//! A child is this MultiVac's when its controller ownerReference carries the
//! MultiVac's uid, or, for the kinds that outlive it (its PVCs and credentials
//! Secret, see `spec.retention`), when it has no controller and its
//! annotation `multivac.io/owner` names this MultiVac's `namespace/name`: a
//! MultiVac created again under the same name takes them back.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use serde_json::{Map, Value, json};

use crate::crd::MultiVac;
use crate::kind::Kind;
use crate::resources::{MANAGED_BY, OWNER_ANNOTATION, owner_key};

/// The MultiVac a reconcile writes children for.
#[derive(Clone, Debug)]
pub(crate) struct Owner {
    /// The controller ownerReference its owned children carry.
    pub(crate) reference: OwnerReference,
    /// `namespace/name`, the value of the owner annotation of retained children.
    pub(crate) key: String,
}

impl Owner {
    pub(crate) fn new(reference: OwnerReference, namespace: &str) -> Self {
        let key = owner_key(namespace, &reference.name);
        Self { reference, key }
    }
}

/// What an existing object is to the MultiVac.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Its own: the operator may update or delete it.
    Ours,
    /// Someone else's: left untouched; why, for the status.
    Foreign(String),
    /// On its way out (being deleted, or controlled by a deleted MultiVac of
    /// the same name): left alone until the garbage collector removes it.
    Leaving(String),
}

/// Whose `meta` (a live object of `kind`) is, seen from `owner`.
pub(crate) fn claim(kind: Kind, meta: &ObjectMeta, owner: &Owner) -> Claim {
    if meta.deletion_timestamp.is_some() {
        return Claim::Leaving("it is being deleted".into());
    }
    let controller = meta
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true));
    match controller {
        Some(c) if c.uid == owner.reference.uid => Claim::Ours,
        Some(c) if is_multivac(c) && c.name == owner.reference.name => Claim::Leaving(format!(
            "it belongs to an earlier MultiVac {} (uid {}) that was deleted, and the garbage collector removes it",
            c.name, c.uid
        )),
        Some(c) => Claim::Foreign(format!("it is controlled by {} {}", c.kind, c.name)),
        None if kind.retained() && retained_for(meta, owner) => Claim::Ours,
        None => Claim::Foreign("it was not made for this MultiVac".into()),
    }
}

fn is_multivac(r: &OwnerReference) -> bool {
    r.kind == MultiVac::kind(&())
        && r.api_version
            .starts_with(&format!("{}/", MultiVac::group(&())))
}

/// A retained child of a MultiVac of this namespace and name (this one, or
/// an earlier one deleted with `retention: Retain`).
fn retained_for(meta: &ObjectMeta, owner: &Owner) -> bool {
    let annotation = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(OWNER_ANNOTATION));
    let managed = meta
        .labels
        .as_ref()
        .and_then(|l| l.get("app.kubernetes.io/managed-by"));
    annotation == Some(&owner.key) && managed.map(String::as_str) == Some(MANAGED_BY)
}

/// What to tell the user about an object the operator leaves alone.
pub(crate) fn conflict_advice(kind: Kind, owner: &Owner) -> String {
    let mut advice =
        "the operator leaves it untouched: delete or rename it, or give this MultiVac another name"
            .to_string();
    if kind.retained() {
        advice.push_str(&format!(
            " (to hand it to this MultiVac, with its data, annotate it {OWNER_ANNOTATION}={} and label it app.kubernetes.io/managed-by={MANAGED_BY})",
            owner.key
        ));
    }
    advice
}

/// The strategic merge patch that gives a retained child `live` the labels,
/// annotations and controller ownerReference of `desired` (the latter only
/// with `retention: Delete`; with `Retain` this MultiVac's reference is
/// removed), or `None` when it already has them. For a child written by a
/// create, which no later server-side apply may change (the credentials Secret).
pub(crate) fn settle_patch(
    live: &ObjectMeta,
    desired: &ObjectMeta,
    owner: &Owner,
) -> Option<Value> {
    let mut meta = Map::new();
    for (key, live_map, want) in [
        ("labels", &live.labels, &desired.labels),
        ("annotations", &live.annotations, &desired.annotations),
    ] {
        let missing: Map<String, Value> = want
            .iter()
            .flatten()
            .filter(|(k, v)| live_map.as_ref().and_then(|m| m.get(*k)) != Some(*v))
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        if !missing.is_empty() {
            meta.insert(key.into(), Value::Object(missing));
        }
    }
    let has = live
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == owner.reference.uid);
    let wants = desired
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == owner.reference.uid);
    match (has, wants) {
        (false, true) => {
            meta.insert("ownerReferences".into(), json!([owner.reference]));
        }
        (true, false) => {
            meta.insert(
                "ownerReferences".into(),
                json!([{"$patch": "delete", "uid": owner.reference.uid}]),
            );
        }
        _ => {}
    }
    (!meta.is_empty()).then(|| json!({"metadata": meta}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn owner() -> Owner {
        Owner::new(
            serde_json::from_value(
                json!({"apiVersion": "multivac.io/v1alpha1", "kind": "MultiVac",
                "name": "mv", "uid": "mv-uid", "controller": true, "blockOwnerDeletion": true}),
            )
            .unwrap(),
            "ns",
        )
    }

    fn meta(v: Value) -> ObjectMeta {
        serde_json::from_value(v).unwrap()
    }

    fn controller(kind: &str, name: &str, uid: &str) -> Value {
        let api = if kind == "MultiVac" {
            "multivac.io/v1alpha1"
        } else {
            "apps/v1"
        };
        json!([{"apiVersion": api, "kind": kind, "name": name, "uid": uid, "controller": true}])
    }

    fn retained_labels() -> Value {
        json!({"app.kubernetes.io/managed-by": "multivac-operator"})
    }

    #[test]
    fn a_child_is_ours_by_uid_or_for_retained_kinds_by_annotation() {
        let o = owner();
        let ours = meta(json!({"ownerReferences": controller("MultiVac", "mv", "mv-uid")}));
        assert_eq!(claim(Kind::ConfigMap, &ours, &o), Claim::Ours);
        let annotated = meta(json!({"annotations": {"multivac.io/owner": "ns/mv"},
            "labels": retained_labels()}));
        assert_eq!(
            claim(Kind::PersistentVolumeClaim, &annotated, &o),
            Claim::Ours
        );
        assert_eq!(claim(Kind::Secret, &annotated, &o), Claim::Ours);
        // Not for kinds that are always owned: the annotation is no claim there.
        assert!(matches!(
            claim(Kind::ConfigMap, &annotated, &o),
            Claim::Foreign(_)
        ));
    }

    #[test]
    fn everything_else_is_foreign_or_leaving() {
        let o = owner();
        let cases = [
            (json!({}), "not made for this MultiVac"),
            (
                json!({"ownerReferences": controller("Deployment", "x", "u")}),
                "controlled by Deployment x",
            ),
            (
                json!({"ownerReferences": controller("MultiVac", "other", "u")}),
                "controlled by MultiVac other",
            ),
            // Another namespace's or name's annotation, or no managed-by label.
            (
                json!({"annotations": {"multivac.io/owner": "other/mv"}, "labels": retained_labels()}),
                "not made",
            ),
            (
                json!({"annotations": {"multivac.io/owner": "ns/mv2"}, "labels": retained_labels()}),
                "not made",
            ),
            (
                json!({"annotations": {"multivac.io/owner": "ns/mv"}}),
                "not made",
            ),
            // A controller that is not this MultiVac wins over the annotation.
            (
                json!({"annotations": {"multivac.io/owner": "ns/mv"}, "labels": retained_labels(),
                    "ownerReferences": controller("Deployment", "x", "u")}),
                "controlled by Deployment x",
            ),
        ];
        for (m, why) in cases {
            match claim(Kind::PersistentVolumeClaim, &meta(m.clone()), &o) {
                Claim::Foreign(w) => assert!(w.contains(why), "{m}: {w}"),
                other => panic!("{m}: {other:?}"),
            }
        }
        let earlier = meta(json!({"ownerReferences": controller("MultiVac", "mv", "old-uid")}));
        assert!(
            matches!(claim(Kind::Deployment, &earlier, &o), Claim::Leaving(w) if w.contains("old-uid"))
        );
        let deleting = meta(json!({"deletionTimestamp": "2026-01-01T00:00:00Z",
            "ownerReferences": controller("MultiVac", "mv", "mv-uid")}));
        assert!(matches!(
            claim(Kind::Deployment, &deleting, &o),
            Claim::Leaving(_)
        ));
    }

    #[test]
    fn settling_adds_what_is_missing_and_moves_the_owner_reference() {
        let o = owner();
        let reference = serde_json::to_value(&o.reference).unwrap();
        let desired = |owned: bool| {
            let mut m =
                json!({"labels": {"a": "1"}, "annotations": {"multivac.io/owner": "ns/mv"}});
            if owned {
                m["ownerReferences"] = json!([reference]);
            }
            meta(m)
        };
        let settled = meta(json!({"labels": {"a": "1", "other": "x"},
            "annotations": {"multivac.io/owner": "ns/mv"}}));
        assert_eq!(settle_patch(&settled, &desired(false), &o), None);
        // The previous release: owned, no annotation; now retained.
        let legacy = meta(json!({"labels": {"a": "1"},
            "ownerReferences": [reference, {"apiVersion": "v1", "kind": "X", "name": "x", "uid": "other"}]}));
        assert_eq!(
            settle_patch(&legacy, &desired(false), &o),
            Some(
                json!({"metadata": {"annotations": {"multivac.io/owner": "ns/mv"},
                "ownerReferences": [{"$patch": "delete", "uid": "mv-uid"}]}})
            )
        );
        // Switched to retention: Delete.
        assert_eq!(
            settle_patch(&settled, &desired(true), &o),
            Some(json!({"metadata": {"ownerReferences": [reference]}}))
        );
        let owned = meta(
            json!({"labels": {"a": "2"}, "annotations": {"multivac.io/owner": "ns/mv"},
            "ownerReferences": [reference]}),
        );
        assert_eq!(
            settle_patch(&owned, &desired(true), &o),
            Some(json!({"metadata": {"labels": {"a": "1"}}}))
        );
    }
}
