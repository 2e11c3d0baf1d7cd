//! The generated credentials of the managed stores, Secret `<name>-credentials`:
//! what it holds, the connection strings made from it, the app's MongoDB user
//! the operator makes ([`ensure_app_user`]), and their rotation ([`advance`]).
//! A password lives only in that Secret and in the stores: never in a log, an
//! annotation, an Event or the status. Pod templates carry a [`digest`] of the
//! values they use, so a change rolls the pods.

mod app_user;
mod mongodb;
mod redis;
mod rotation;

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use multivac_contract::secret_key;
use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};

pub(crate) use app_user::{APP_USER_RETRY, AppUser, ensure_app_user};
pub(crate) use rotation::{Progress, ROTATE_ANNOTATION, ROTATED_ANNOTATION, advance};

/// The managed MongoDB's root user: created by the image's first start, used
/// by the operator only (to create, rotate and drop the app's users).
pub(crate) const ROOT_USERNAME: &str = "multivac";
/// The app's MongoDB users. MongoDB keeps one password per user, so a
/// rotation creates the other one and drops the old one once unused.
pub(crate) const APP_USERNAMES: [&str; 2] = ["multivac-a", "multivac-b"];

/// Redis port.
pub const REDIS_PORT: i32 = 6379;
/// MongoDB port.
pub const MONGODB_PORT: i32 = 27017;

/// A new random password: 32 alphanumerics (about 190 bits; URL-safe, so it
/// needs no escaping in a connection string).
pub(crate) fn new_password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

/// The hex SHA-256 of a value: what leaves the operator instead of a secret.
pub(crate) fn digest(value: &[u8]) -> String {
    Sha256::digest(value)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `redis-url` for a password and the Service `host`.
pub(crate) fn redis_url(password: &str, host: &str) -> String {
    format!("redis://:{password}@{host}/0")
}

/// `mongodb-uri` for a user of the admin database and the Service `host`.
pub(crate) fn mongodb_uri(user: &str, password: &str, host: &str) -> String {
    format!("mongodb://{user}:{password}@{host}/?authSource=admin")
}

/// The credentials Secret as it is live, decoded. Its `Debug` shows the
/// keys, never a value.
#[derive(Clone, PartialEq)]
pub(crate) struct Credentials {
    pub(crate) name: String,
    /// The version every write is conditioned on (no lost update between
    /// two writers, e.g. a stale leader).
    pub(crate) resource_version: String,
    values: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    /// Its metadata (without managedFields): whose it is decides whether it
    /// may be used, rotated or have its ownership settled.
    pub(crate) meta: ObjectMeta,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("name", &self.name)
            .field("resource_version", &self.resource_version)
            .field("keys", &self.values.keys().collect::<Vec<_>>())
            .field("annotations", &self.annotations)
            .finish()
    }
}

impl Credentials {
    /// Reads a live Secret (`data`, and `stringData` as a fake or an old
    /// client may leave it).
    pub(crate) fn from_secret(secret: &Secret) -> Self {
        let mut values: BTreeMap<String, String> = secret
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
            .collect();
        for (k, v) in secret.string_data.iter().flatten() {
            values.insert(k.clone(), v.clone());
        }
        Self {
            name: secret.metadata.name.clone().unwrap_or_default(),
            resource_version: secret.metadata.resource_version.clone().unwrap_or_default(),
            values,
            annotations: secret.metadata.annotations.clone().unwrap_or_default(),
            meta: ObjectMeta {
                managed_fields: None,
                ..secret.metadata.clone()
            },
        }
    }

    pub(crate) fn value(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    pub(crate) fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }

    /// The keys every pod and the operator rely on, that this Secret lacks.
    pub(crate) fn missing_keys(&self) -> Vec<&'static str> {
        [
            secret_key::REDIS_PASSWORD,
            secret_key::REDIS_URL,
            secret_key::MONGODB_USERNAME,
            secret_key::MONGODB_PASSWORD,
            secret_key::MONGODB_URI,
        ]
        .into_iter()
        .filter(|k| !self.values.contains_key(*k))
        .collect()
    }

    /// The user the app connects to MongoDB as: its own, or the root user in
    /// a Secret made before app users existed.
    pub(crate) fn app_username(&self) -> &str {
        self.value(secret_key::MONGODB_APP_USERNAME)
            .or(self.value(secret_key::MONGODB_USERNAME))
            .unwrap_or(ROOT_USERNAME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn debug_names_keys_never_values() {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "mv-credentials", "resourceVersion": "7"},
            "data": {"redis-password": "c2VjcmV0"},
            "stringData": {"mongodb-password": "hidden"},
        }))
        .unwrap();
        let c = Credentials::from_secret(&secret);
        assert_eq!(c.value("redis-password"), Some("secret"));
        assert_eq!(c.value("mongodb-password"), Some("hidden"));
        let printed = format!("{c:?}");
        assert!(printed.contains("redis-password") && printed.contains("\"7\""));
        assert!(
            !printed.contains("secret\"") && !printed.contains("hidden"),
            "{printed}"
        );
        assert_eq!(
            c.missing_keys(),
            ["redis-url", "mongodb-username", "mongodb-uri"]
        );
        assert_eq!(c.app_username(), "multivac", "no app user: root");
    }

    #[test]
    fn digest_is_sha256() {
        assert_eq!(
            digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn connection_strings() {
        assert_eq!(redis_url("p", "h:6379"), "redis://:p@h:6379/0");
        assert_eq!(
            mongodb_uri("u", "p", "h:27017"),
            "mongodb://u:p@h:27017/?authSource=admin"
        );
    }
}
