//! Pure checks the schema cannot express (or that must hold even when an
//! older CRD without the CEL rules is installed).

use crate::crd::MultiVac;
use crate::error::{Error, Result};

/// Longest MultiVac name: `<name>-mongodb` must still be a valid Service name (63).
pub const MAX_NAME_LEN: usize = 55;

/// Checks a MultiVac before anything is built from it.
pub fn validate(mv: &MultiVac) -> Result<()> {
    let name = mv.metadata.name.as_deref().unwrap_or_default();
    if name.len() > MAX_NAME_LEN {
        return Err(Error::InvalidSpec(format!(
            "metadata.name {name:?} is {} characters; use at most {MAX_NAME_LEN} so the child Service names stay valid DNS labels",
            name.len()
        )));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(Error::InvalidSpec(format!(
            "metadata.name {name:?} must start with a lowercase letter: Service names derived from it must"
        )));
    }
    let s = &mv.spec;
    if s.image.trim().is_empty() {
        return Err(Error::InvalidSpec("spec.image must not be empty".into()));
    }
    if s.workers.min_replicas < 0 || s.server.replicas < 0 {
        return Err(Error::InvalidSpec(
            "replica counts must not be negative".into(),
        ));
    }
    if s.workers.min_replicas > s.workers.max_replicas {
        return Err(Error::InvalidSpec(format!(
            "workers.minReplicas ({}) must be less than or equal to workers.maxReplicas ({})",
            s.workers.min_replicas, s.workers.max_replicas
        )));
    }
    if s.redis.managed.is_some() && s.redis.external.is_some() {
        return Err(Error::InvalidSpec(
            "set only one of redis.managed and redis.external".into(),
        ));
    }
    if s.mongodb.managed.is_some() && s.mongodb.external.is_some() {
        return Err(Error::InvalidSpec(
            "set only one of mongodb.managed and mongodb.external".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing::mv;
    use serde_json::json;

    #[test]
    fn accepts_the_minimal_spec() {
        validate(&mv(json!({"image": "x"}))).unwrap();
    }

    #[test]
    fn rejects_what_cannot_be_built_with_a_message() {
        for (spec, needle) in [
            (json!({"image": " "}), "spec.image"),
            (
                json!({"image": "x", "workers": {"minReplicas": 5, "maxReplicas": 2}}),
                "minReplicas (5)",
            ),
            (
                json!({"image": "x", "server": {"replicas": -1}}),
                "negative",
            ),
            (
                json!({"image": "x", "redis": {"managed": {}, "external": {"secretRef": {"name": "a"}}}}),
                "redis.managed and redis.external",
            ),
            (
                json!({"image": "x", "mongodb": {"managed": {}, "external": {"secretRef": {"name": "a"}}}}),
                "mongodb.managed and mongodb.external",
            ),
        ] {
            let err = validate(&mv(spec.clone())).unwrap_err();
            assert!(err.is_permanent());
            assert!(err.to_string().contains(needle), "{spec}: {err}");
        }
        let mut long = mv(json!({"image": "x"}));
        long.metadata.name = Some("a".repeat(56));
        assert!(
            validate(&long)
                .unwrap_err()
                .to_string()
                .contains("at most 55")
        );
        let mut digit = mv(json!({"image": "x"}));
        digit.metadata.name = Some("1mv".into());
        assert!(validate(&digit).is_err());
    }
}
