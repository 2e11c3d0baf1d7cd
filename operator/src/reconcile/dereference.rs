//! Reads what the spec points at: the Secrets the user provides (external
//! datastores, API token) and whether the generated credentials Secret
//! exists. It only reads and reports; [`super::validate`] decides what a
//! missing key means.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::cluster::Cluster;
use crate::crd::{MultiVac, SecretSource};
use crate::error::Result;
use crate::resources::Kind;

/// One user-provided Secret key the spec names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SecretKey {
    pub(crate) source: SecretSource,
    /// The Secret exists and has the key.
    pub(crate) present: bool,
}

/// What the spec points at, as the API server has it now.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Dereferenced {
    /// Every user-provided Secret key, in the order the spec names them.
    pub(crate) secret_keys: Vec<SecretKey>,
    /// The generated credentials Secret's metadata, when it exists (only read
    /// when a store is managed): whose it is decides whether it may be changed.
    pub(crate) credentials: Option<ObjectMeta>,
}

/// The user-provided Secret keys this MultiVac needs.
pub(crate) fn referenced(mv: &MultiVac) -> Vec<SecretSource> {
    let mut refs = vec![];
    if !mv.redis_managed() {
        refs.push(mv.redis_url_source());
        refs.extend(mv.redis_ca_source());
    }
    if !mv.mongodb_managed() {
        refs.push(mv.mongodb_uri_source());
        refs.extend(mv.mongodb_ca_source());
    }
    refs.extend(mv.api_token_source());
    refs
}

/// Reads every referenced Secret and, with a managed store, the credentials
/// Secret's metadata.
pub(crate) async fn dereference(cluster: &Cluster<'_>, mv: &MultiVac) -> Result<Dereferenced> {
    let mut secret_keys = vec![];
    for source in referenced(mv) {
        let secret = cluster.get::<Secret>(&source.name).await?;
        secret_keys.push(SecretKey {
            present: secret.is_some_and(|s| has_key(&s, &source.key)),
            source,
        });
    }
    let credentials = if mv.redis_managed() || mv.mongodb_managed() {
        cluster
            .metadata(Kind::Secret, &mv.credentials_name())
            .await?
    } else {
        None
    };
    Ok(Dereferenced {
        secret_keys,
        credentials,
    })
}

fn has_key(secret: &Secret, key: &str) -> bool {
    secret.data.as_ref().is_some_and(|d| d.contains_key(key))
        || secret
            .string_data
            .as_ref()
            .is_some_and(|d| d.contains_key(key))
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
        // The CAs of external stores are the user's Secrets too.
        let refs = referenced(&mv(json!({
            "redis": {"external": {"secretRef": {"name": "r"}, "caSecretRef": {"name": "rca"}}},
            "mongodb": {"external": {"secretRef": {"name": "m"}, "caSecretRef": {"name": "mca", "key": "pem"}}}})));
        let names: Vec<String> = refs
            .iter()
            .map(|r| format!("{}/{}", r.name, r.key))
            .collect();
        assert_eq!(
            names,
            ["r/redis-url", "rca/ca.crt", "m/mongodb-uri", "mca/pem"]
        );
    }

    #[test]
    fn a_key_counts_in_data_or_string_data() {
        let s = |v| serde_json::from_value::<Secret>(v).unwrap();
        assert!(has_key(&s(json!({"data": {"k": "eA=="}})), "k"));
        assert!(has_key(&s(json!({"stringData": {"k": "x"}})), "k"));
        assert!(!has_key(&s(json!({"data": {"other": "eA=="}})), "k"));
        assert!(!has_key(&s(json!({})), "k"));
    }
}
