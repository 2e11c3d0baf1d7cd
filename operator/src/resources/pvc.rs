//! The PersistentVolumeClaims of the managed datastores.

use serde_json::{Value, json};

use super::metadata;
use crate::crd::{MultiVac, StorageSpec};
use crate::error::Result;

/// Name of the data PVC of `component` (`redis` or `mongodb`).
pub fn name(mv: &MultiVac, component: &str) -> String {
    format!("{}-{component}-data", super::name(mv))
}

/// PVC `<mv>-<component>-data`, ReadWriteOnce.
pub fn build(mv: &MultiVac, component: &str, storage: &StorageSpec) -> Result<Value> {
    let mut spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": storage.size}},
    });
    if let Some(class) = &storage.storage_class_name {
        spec["storageClassName"] = json!(class);
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(mv, &name(mv, component), component)?,
        "spec": spec,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{labels, mv, owner};
    use super::*;

    #[test]
    fn pvc_requests_the_configured_storage() {
        let m = mv(
            json!({"image": "x", "redis": {"managed": {"storage": {"size": "2Gi", "storageClassName": "fast"}}}}),
        );
        let storage = m.spec.redis.managed.clone().unwrap().storage;
        assert_eq!(
            build(&m, "redis", &storage).unwrap(),
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
        let default = build(
            &mv(json!({"image": "x"})),
            "mongodb",
            &StorageSpec::default(),
        )
        .unwrap();
        assert_eq!(default["spec"]["resources"]["requests"]["storage"], "1Gi");
        assert!(default["spec"].get("storageClassName").is_none());
    }
}
