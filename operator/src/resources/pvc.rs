//! The PersistentVolumeClaims of the managed datastores.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde_json::json;

use super::{metadata, typed};
use crate::crd::StorageSpec;
use crate::error::Result;
use crate::reconcile::Validated;

/// Name of the data PVC of `component` (`redis` or `mongodb`).
pub(super) fn name(mv: &Validated, component: &str) -> String {
    format!("{}-{component}-data", mv.name)
}

/// PVC `<mv>-<component>-data`, ReadWriteOnce.
pub(super) fn build(
    mv: &Validated,
    component: &str,
    storage: &StorageSpec,
) -> Result<PersistentVolumeClaim> {
    let mut spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": storage.size}},
    });
    if let Some(class) = &storage.storage_class_name {
        spec["storageClassName"] = json!(class);
    }
    typed(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(mv, &name(mv, component), component),
        "spec": spec,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{json_of, labels, mv, owner, validated};
    use super::*;

    #[test]
    fn pvc_requests_the_configured_storage() {
        let m = mv(
            json!({"image": "x", "redis": {"managed": {"storage": {"size": "2Gi", "storageClassName": "fast"}}}}),
        );
        let storage = m.spec.redis.managed.clone().unwrap().storage;
        assert_eq!(
            json_of(&build(&validated(&m), "redis", &storage).unwrap()),
            json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "mv-redis-data", "namespace": "ns", "labels": labels("redis"), "ownerReferences": owner()},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "2Gi"}},
                    "storageClassName": "fast",
                },
            })
        );
        let default = json_of(
            &build(
                &validated(&mv(json!({"image": "x"}))),
                "mongodb",
                &StorageSpec::default(),
            )
            .unwrap(),
        );
        assert_eq!(default["spec"]["resources"]["requests"]["storage"], "1Gi");
        assert!(default["spec"].get("storageClassName").is_none());
    }
}
