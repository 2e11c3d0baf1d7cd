//! The app's non-secret settings, read by server and worker through `envFrom`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use multivac_contract::{LogFormat, env};
use serde_json::json;

use super::{metadata, typed};
use crate::error::Result;
use crate::validated::Validated;

/// The settings as environment variables (also hashed into the pod templates).
fn data(mv: &Validated) -> BTreeMap<String, String> {
    let mut d = BTreeMap::from([
        (
            env::MONGODB_DATABASE.to_string(),
            mv.spec.mongodb.database.clone(),
        ),
        (
            env::LOG_FORMAT.to_string(),
            LogFormat::Json.as_str().to_string(),
        ),
    ]);
    if let Some(n) = mv.spec.answer.required_concepts {
        d.insert(env::REQUIRED_CONCEPTS.into(), n.to_string());
    }
    d
}

/// Hash of [`data`], put on the pod templates so editing a setting rolls the pods.
pub(super) fn hash(mv: &Validated) -> String {
    super::stable_hash(&serde_json::to_string(&data(mv)).unwrap_or_default())
}

/// ConfigMap `<mv>-config`.
pub(super) fn build(mv: &Validated) -> Result<ConfigMap> {
    typed(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(mv, &mv.config_name(), "multivac"),
        "data": data(mv),
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{json_of, labels, mv, owner, validated};
    use super::*;

    #[test]
    fn config_map_holds_the_app_settings() {
        let m = mv(
            json!({"image": "x", "answer": {"requiredConcepts": 42}, "mongodb": {"database": "db1"}}),
        );
        let v = validated(&m);
        assert_eq!(
            json_of(&build(&v).unwrap()),
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "mv-config", "namespace": "ns", "labels": labels("multivac"), "ownerReferences": owner()},
                "data": {
                    "MULTIVAC_MONGODB_DATABASE": "db1",
                    "MULTIVAC_LOG_FORMAT": "json",
                    "MULTIVAC_REQUIRED_CONCEPTS": "42",
                },
            })
        );
        let defaults = mv(json!({"image": "x"}));
        let d = validated(&defaults);
        assert!(!data(&d).contains_key("MULTIVAC_REQUIRED_CONCEPTS"));
        assert_ne!(hash(&v), hash(&d));
    }
}
