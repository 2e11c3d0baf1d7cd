//! The app's non-secret settings, read by server and worker through `envFrom`.

use std::collections::BTreeMap;

use multivac_contract::{LogFormat, env};
use serde_json::{Value, json};

use super::metadata;
use crate::crd::MultiVac;
use crate::error::Result;

/// The settings as environment variables (also hashed into the pod templates).
pub fn data(mv: &MultiVac) -> BTreeMap<String, String> {
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
pub fn hash(mv: &MultiVac) -> String {
    super::stable_hash(&serde_json::to_string(&data(mv)).unwrap_or_default())
}

/// ConfigMap `<mv>-config`.
pub fn build(mv: &MultiVac) -> Result<Value> {
    Ok(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(mv, &mv.config_name(), "multivac")?,
        "data": data(mv),
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{labels, mv, owner};
    use super::*;

    #[test]
    fn config_map_holds_the_app_settings() {
        let m = mv(
            json!({"image": "x", "answer": {"requiredConcepts": 42}, "mongodb": {"database": "db1"}}),
        );
        assert_eq!(
            build(&m).unwrap(),
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
        assert!(!data(&defaults).contains_key("MULTIVAC_REQUIRED_CONCEPTS"));
        assert_ne!(hash(&m), hash(&defaults));
    }
}
