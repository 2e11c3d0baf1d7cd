//! Reads what the spec points at: the Secrets the user provides (external
//! datastores, API token). A missing one is a permanent error until the user
//! creates it: the status says which.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::crd::{MultiVac, SecretSource};
use crate::error::{Error, Result};

/// The user-provided Secret keys this MultiVac needs.
pub fn referenced(mv: &MultiVac) -> Vec<SecretSource> {
    let mut refs = vec![];
    if !mv.redis_managed() {
        refs.push(mv.redis_url_source());
    }
    if !mv.mongodb_managed() {
        refs.push(mv.mongodb_uri_source());
    }
    refs.extend(mv.api_token_source());
    refs
}

/// Fails with [`Error::MissingSecret`] for the first referenced key that does not exist.
pub async fn check_secrets(secrets: &Api<Secret>, namespace: &str, mv: &MultiVac) -> Result<()> {
    for src in referenced(mv) {
        let secret = secrets.get_opt(&src.name).await?;
        let has_key = secret.is_some_and(|s| {
            s.data.as_ref().is_some_and(|d| d.contains_key(&src.key))
                || s.string_data
                    .as_ref()
                    .is_some_and(|d| d.contains_key(&src.key))
        });
        if !has_key {
            return Err(Error::MissingSecret {
                namespace: namespace.into(),
                name: src.name,
                key: src.key,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing::mv;
    use serde_json::json;

    #[test]
    fn only_user_provided_secrets_are_referenced() {
        assert!(referenced(&mv(json!({"image": "x"}))).is_empty());
        let refs = referenced(&mv(json!({"image": "x",
            "redis": {"external": {"secretRef": {"name": "r", "key": "u"}}},
            "apiTokenSecretRef": {"name": "t"}})));
        assert_eq!(
            refs,
            vec![
                SecretSource {
                    name: "r".into(),
                    key: "u".into()
                },
                SecretSource {
                    name: "t".into(),
                    key: "token".into()
                },
            ]
        );
    }
}
