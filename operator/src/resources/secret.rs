//! The generated credentials Secret. It is created only when no data volume
//! of the MultiVac exists (see `reconcile::validate`), and afterwards changed
//! only by a rotation (`credentials::advance`), so the passwords stay those
//! the datastores know. The random values are passed in, keeping this pure.

use k8s_openapi::api::core::v1::Secret;
use serde_json::json;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{MONGODB_PORT, REDIS_PORT, retained_metadata, typed};
use crate::credentials::{
    APP_USERNAMES, ROOT_USERNAME, ROTATE_ANNOTATION, ROTATED_ANNOTATION, mongodb_uri, new_password,
    redis_url,
};
use crate::error::Result;
use crate::validated::Validated;
use multivac_contract::secret_key;

/// The passwords a new credentials Secret holds.
pub(crate) struct Passwords {
    pub(crate) redis: String,
    /// MongoDB's root user (the operator's, for the app's users).
    pub(crate) mongodb: String,
    /// The app's own MongoDB user.
    pub(crate) mongodb_app: String,
}

impl Passwords {
    /// Random passwords, see [`new_password`].
    pub(crate) fn generate() -> Self {
        Self {
            redis: new_password(),
            mongodb: new_password(),
            mongodb_app: new_password(),
        }
    }
}

/// The metadata of Secret `<mv>-credentials`.
pub(super) fn metadata(mv: &Validated) -> ObjectMeta {
    retained_metadata(mv, &mv.credentials_name(), "multivac")
}

/// Secret `<mv>-credentials` with the given passwords. A rotation already
/// asked for on the new MultiVac counts as done: its passwords are new.
pub(super) fn build(mv: &Validated, passwords: &Passwords) -> Result<Secret> {
    let ns = mv.namespace;
    let redis_host = format!("{}.{ns}.svc:{REDIS_PORT}", mv.redis_name());
    let mongodb_host = format!("{}.{ns}.svc:{MONGODB_PORT}", mv.mongodb_name());
    let app = APP_USERNAMES[0];
    let mut metadata = metadata(mv);
    if let Some(token) = mv.annotation(ROTATE_ANNOTATION) {
        metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(ROTATED_ANNOTATION.to_string(), token.to_string());
    }
    typed(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "stringData": {
            secret_key::REDIS_PASSWORD: passwords.redis,
            secret_key::REDIS_URL: redis_url(&passwords.redis, &redis_host),
            secret_key::MONGODB_USERNAME: ROOT_USERNAME,
            secret_key::MONGODB_PASSWORD: passwords.mongodb,
            secret_key::MONGODB_APP_USERNAME: app,
            secret_key::MONGODB_APP_PASSWORD: passwords.mongodb_app,
            secret_key::MONGODB_URI: mongodb_uri(app, &passwords.mongodb_app, &mongodb_host),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{json_of, labels, mv, owner, validated};
    use super::*;

    #[test]
    fn the_secret_is_owned_only_with_retention_delete() {
        let m = mv(json!({"image": "x", "retention": "Delete"}));
        assert_eq!(
            json_of(&metadata(&validated(&m)))["ownerReferences"],
            owner()
        );
    }

    #[test]
    fn secret_wires_passwords_into_urls() {
        let passwords = Passwords {
            redis: "rpw".into(),
            mongodb: "mpw".into(),
            mongodb_app: "apw".into(),
        };
        assert_eq!(
            json_of(&build(&validated(&mv(json!({"image": "x"}))), &passwords).unwrap()),
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "mv-credentials", "namespace": "ns", "labels": labels("multivac"),
                             "annotations": {"multivac.io/owner": "ns/mv"}},
                "type": "Opaque",
                "stringData": {
                    "redis-password": "rpw",
                    "redis-url": "redis://:rpw@mv-redis.ns.svc:6379/0",
                    "mongodb-username": "multivac",
                    "mongodb-password": "mpw",
                    "mongodb-app-username": "multivac-a",
                    "mongodb-app-password": "apw",
                    "mongodb-uri": "mongodb://multivac-a:apw@mv-mongodb.ns.svc:27017/?authSource=admin",
                },
            })
        );
        // Created for a MultiVac that already asks for a rotation: done.
        let mut m = mv(json!({"image": "x"}));
        m.metadata.annotations = Some(
            [(
                "multivac.io/rotate-credentials".to_string(),
                "7".to_string(),
            )]
            .into(),
        );
        let s = json_of(&build(&validated(&m), &passwords).unwrap());
        assert_eq!(
            s["metadata"]["annotations"],
            json!({"multivac.io/owner": "ns/mv", "multivac.io/rotated": "7"})
        );
    }

    #[test]
    fn passwords_are_long_random_and_url_safe() {
        let Passwords {
            redis: a,
            mongodb: b,
            mongodb_app: c,
        } = Passwords::generate();
        assert_eq!(a.len(), 32);
        assert!(a != b && b != c && a != c);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, Passwords::generate().redis);
    }
}
