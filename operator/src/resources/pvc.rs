//! The PersistentVolumeClaims of the managed datastores.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde_json::json;

use super::{retained_metadata, typed};
use crate::crd::StorageSpec;
use crate::error::Result;
use crate::validated::Validated;

/// Name of the data PVC of `component` (`redis` or `mongodb`).
pub(super) fn name(mv: &Validated, component: &str) -> String {
    mv.data_volume_name(component)
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
        "metadata": retained_metadata(mv, &name(mv, component), component),
        "spec": spec,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{json_of, labels, mv, owner, validated};
    use super::*;
    use crate::crd::Retention;

    #[test]
    fn pvc_requests_the_configured_storage() {
        let m = mv(
            json!({"image": "x", "redis": {"managed": {"storage": {"size": "2Gi", "storageClassName": "fast"}}}}),
        );
        let storage = m.spec.redis.managed.clone().unwrap().store.storage;
        assert_eq!(
            json_of(&build(&validated(&m), "redis", &storage).unwrap()),
            json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "mv-redis-data", "namespace": "ns", "labels": labels("redis"),
                             "annotations": {"multivac.io/owner": "ns/mv"}},
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
        // Owned, so garbage-collected with the MultiVac, only with `Delete`.
        let mut deleting = mv(json!({"image": "x", "retention": "Delete"}));
        assert_eq!(deleting.spec.retention, Retention::Delete);
        let owned = json_of(&build(&validated(&deleting), "redis", &storage).unwrap());
        assert_eq!(owned["metadata"]["ownerReferences"], owner());
        assert_eq!(
            owned["metadata"]["annotations"]["multivac.io/owner"],
            "ns/mv"
        );
        deleting.spec.retention = Retention::Retain;
        let kept = json_of(&build(&validated(&deleting), "redis", &storage).unwrap());
        assert!(kept["metadata"].get("ownerReferences").is_none(), "{kept}");
    }
}
