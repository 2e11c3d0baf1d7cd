//! The generated credentials Secret. It is created once (create-if-absent) and
//! never rewritten while it exists, so the passwords stay those the datastores
//! were initialised with. The random values are passed in, keeping this pure.

use rand::distr::{Alphanumeric, SampleString};
use serde_json::{Value, json};

use super::{MONGODB_PORT, REDIS_PORT, metadata, namespace};
use crate::crd::{
    MONGODB_PASSWORD_KEY, MONGODB_URI_KEY, MONGODB_USERNAME_KEY, MultiVac, REDIS_PASSWORD_KEY,
    REDIS_URL_KEY,
};
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
            REDIS_PASSWORD_KEY: redis_password,
            REDIS_URL_KEY: format!("redis://:{redis_password}@{redis_host}:{REDIS_PORT}/0"),
            MONGODB_USERNAME_KEY: MONGODB_USERNAME,
            MONGODB_PASSWORD_KEY: mongodb_password,
            MONGODB_URI_KEY: format!(
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
