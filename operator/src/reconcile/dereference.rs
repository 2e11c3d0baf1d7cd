//! Reads what the spec points at: the Secrets the user provides (external
//! datastores, API token), the generated credentials Secret, and, when that
//! is missing, whether data volumes exist that its passwords protect. It
//! only reads and reports; [`super::validate`] decides what a missing key
//! means. Secrets are read one by one (GET): the operator may not list or
//! watch them.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Secret;

use crate::cluster::Cluster;
use crate::crd::{MultiVac, SecretSource};
use crate::credentials::{Credentials, digest};
use crate::error::Result;
use crate::kind::Kind;

/// One user-provided Secret key the spec names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SecretKey {
    pub(crate) source: SecretSource,
    /// The Secret exists and has the key.
    pub(crate) present: bool,
    /// The SHA-256 of the key's value (never the value), for the pods'
    /// digest of the Secrets they use.
    pub(crate) digest: Option<String>,
}

/// What the spec points at, as the API server has it now.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Dereferenced {
    /// Every user-provided Secret key, in the order the spec names them.
    pub(crate) secret_keys: Vec<SecretKey>,
    /// The generated credentials Secret (only read when a store is managed).
    pub(crate) credentials: Option<Credentials>,
    /// The data PVCs of the managed stores that exist, read only when the
    /// credentials Secret is missing: new passwords would lock their data out.
    pub(crate) data_volumes: Vec<String>,
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

/// Reads every referenced Secret (each once) and, with a managed store, the
/// credentials Secret, or the data volumes when it is missing.
pub(crate) async fn dereference(cluster: &Cluster<'_>, mv: &MultiVac) -> Result<Dereferenced> {
    let mut secrets: HashMap<String, Option<Secret>> = HashMap::new();
    let mut secret_keys = vec![];
    for source in referenced(mv) {
        if !secrets.contains_key(&source.name) {
            let secret = cluster.get::<Secret>(&source.name).await?;
            secrets.insert(source.name.clone(), secret);
        }
        let value = secrets[&source.name]
            .as_ref()
            .and_then(|s| value(s, &source.key));
        secret_keys.push(SecretKey {
            present: value.is_some(),
            digest: value.map(digest),
            source,
        });
    }
    let mut read = Dereferenced {
        secret_keys,
        ..Default::default()
    };
    if !(mv.redis_managed() || mv.mongodb_managed()) {
        return Ok(read);
    }
    read.credentials = cluster
        .get::<Secret>(&mv.credentials_name())
        .await?
        .map(|s| Credentials::from_secret(&s));
    if read.credentials.is_none() {
        for component in ["redis", "mongodb"] {
            let name = mv.data_volume_name(component);
            // From the API server, not the store: a data volume whose labels
            // were edited away still holds data.
            if cluster
                .live_metadata(Kind::PersistentVolumeClaim, &name)
                .await?
                .is_some()
            {
                read.data_volumes.push(name);
            }
        }
    }
    Ok(read)
}

/// A key's value, in `data` or in `stringData`.
fn value<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| v.0.as_slice())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|v| v.as_bytes())
        })
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
        assert_eq!(
            value(&s(json!({"data": {"k": "eA=="}})), "k"),
            Some(&b"x"[..])
        );
        assert_eq!(
            value(&s(json!({"stringData": {"k": "x"}})), "k"),
            Some(&b"x"[..])
        );
        assert_eq!(value(&s(json!({"data": {"other": "eA=="}})), "k"), None);
        assert_eq!(value(&s(json!({})), "k"), None);
    }
}
