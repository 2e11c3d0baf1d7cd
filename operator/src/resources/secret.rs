//! The generated credentials Secret. It is created once (create-if-absent) and
//! never rewritten while it exists, so the passwords stay those the datastores
//! were initialised with. The random values are passed in, keeping this pure.

use k8s_openapi::api::core::v1::Secret;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::json;

use super::{MONGODB_PORT, REDIS_PORT, metadata, typed};
use crate::error::Result;
use crate::reconcile::Validated;
use multivac_contract::secret_key;

/// User name of the managed MongoDB's root user.
const MONGODB_USERNAME: &str = "multivac";

/// The passwords a new credentials Secret holds.
pub(crate) struct Passwords {
    pub(crate) redis: String,
    pub(crate) mongodb: String,
}

impl Passwords {
    /// Random alphanumeric passwords (URL-safe, so they need no escaping in URLs).
    pub(crate) fn generate() -> Self {
        let password = || Alphanumeric.sample_string(&mut rand::rng(), 32);
        Self {
            redis: password(),
            mongodb: password(),
        }
    }
}

/// Secret `<mv>-credentials` with the given passwords.
pub(super) fn build(mv: &Validated, passwords: &Passwords) -> Result<Secret> {
    let ns = mv.namespace;
    let redis_host = format!("{}.{ns}.svc", mv.redis_name());
    let mongodb_host = format!("{}.{ns}.svc", mv.mongodb_name());
    let (redis_password, mongodb_password) = (&passwords.redis, &passwords.mongodb);
    typed(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(mv, &mv.credentials_name(), "multivac"),
        "type": "Opaque",
        "stringData": {
            secret_key::REDIS_PASSWORD: redis_password,
            secret_key::REDIS_URL: format!("redis://:{redis_password}@{redis_host}:{REDIS_PORT}/0"),
            secret_key::MONGODB_USERNAME: MONGODB_USERNAME,
            secret_key::MONGODB_PASSWORD: mongodb_password,
            secret_key::MONGODB_URI: format!(
                "mongodb://{MONGODB_USERNAME}:{mongodb_password}@{mongodb_host}:{MONGODB_PORT}/?authSource=admin"
            ),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{json_of, labels, mv, owner, validated};
    use super::*;

    #[test]
    fn secret_wires_passwords_into_urls() {
        let passwords = Passwords {
            redis: "rpw".into(),
            mongodb: "mpw".into(),
        };
        assert_eq!(
            json_of(&build(&validated(&mv(json!({"image": "x"}))), &passwords).unwrap()),
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "mv-credentials", "namespace": "ns", "labels": labels("multivac"), "ownerReferences": owner()},
                "type": "Opaque",
                "stringData": {
                    "redis-password": "rpw",
                    "redis-url": "redis://:rpw@mv-redis.ns.svc:6379/0",
                    "mongodb-username": "multivac",
                    "mongodb-password": "mpw",
                    "mongodb-uri": "mongodb://multivac:mpw@mv-mongodb.ns.svc:27017/?authSource=admin",
                },
            })
        );
    }

    #[test]
    fn passwords_are_long_random_and_url_safe() {
        let Passwords {
            redis: a,
            mongodb: b,
        } = Passwords::generate();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, Passwords::generate().redis);
    }
}
