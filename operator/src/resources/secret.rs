//! The generated credentials Secret. It is created once (create-if-absent) and
//! never rewritten while it exists, so the passwords stay those the datastores
//! were initialised with. The random values are passed in, keeping this pure.

use rand::distr::{Alphanumeric, SampleString};
use serde_json::{Value, json};

use super::{MONGODB_PORT, REDIS_PORT, metadata, namespace};
use multivac_contract::secret_key;

use crate::crd::MultiVac;
use crate::error::Result;

/// User name of the managed MongoDB's root user.
pub const MONGODB_USERNAME: &str = "multivac";

/// A random alphanumeric password (URL-safe, so it needs no escaping in URLs).
pub fn generate_password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

/// Secret `<mv>-credentials` with the given passwords.
pub fn build(mv: &MultiVac, redis_password: &str, mongodb_password: &str) -> Result<Value> {
    let ns = namespace(mv)?;
    let redis_host = format!("{}.{ns}.svc", mv.redis_name());
    let mongodb_host = format!("{}.{ns}.svc", mv.mongodb_name());
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(mv, &mv.credentials_name(), "multivac")?,
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
    use super::super::testing::{labels, mv, owner};
    use super::*;

    #[test]
    fn secret_wires_passwords_into_urls() {
        assert_eq!(
            build(&mv(json!({"image": "x"})), "rpw", "mpw").unwrap(),
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
        let (a, b) = (generate_password(), generate_password());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
