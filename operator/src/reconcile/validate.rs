//! Pure checks the schema cannot express (or that must hold even when an
//! older CRD without the CEL rules is installed). What passes becomes a
//! [`Validated`], the only input the builders take: a value of it proves the
//! checks ran, and it carries what they resolved (namespace, owner, how each
//! store is provided), so building cannot fail on bad input.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;

use super::dereference::Dereferenced;
use crate::crd::{ManagedStore, MultiVac, MultiVacSpec, SecretSource};
use crate::error::{Error, Result};

/// Longest MultiVac name: `<name>-mongodb` must still be a valid Service name (63).
pub(crate) const MAX_NAME_LEN: usize = 55;

/// How a datastore is provided, once the spec is known to name exactly one way.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Store {
    /// Run by the operator, with the spec's settings or the defaults.
    Managed(ManagedStore),
    /// Run by the user; the app reads its URL from a Secret the user made.
    External,
}

/// A MultiVac that passed every check, with what the checks resolved.
#[derive(Clone, Debug)]
pub(crate) struct Validated<'a> {
    mv: &'a MultiVac,
    pub(crate) name: &'a str,
    pub(crate) namespace: &'a str,
    /// The controller ownerReference every child carries.
    pub(crate) owner: OwnerReference,
    pub(crate) spec: &'a MultiVacSpec,
    pub(crate) redis: Store,
    pub(crate) mongodb: Store,
    /// A store is managed and its generated credentials Secret does not exist yet.
    pub(crate) create_credentials: bool,
}

impl Validated<'_> {
    /// Name of the server Deployment and Service.
    pub(crate) fn server_name(&self) -> String {
        self.mv.server_name()
    }
    /// Name of the worker Deployment.
    pub(crate) fn worker_name(&self) -> String {
        self.mv.worker_name()
    }
    /// Name of the managed Redis Deployment, Service and NetworkPolicy.
    pub(crate) fn redis_name(&self) -> String {
        self.mv.redis_name()
    }
    /// Name of the managed MongoDB Deployment, Service and NetworkPolicy.
    pub(crate) fn mongodb_name(&self) -> String {
        self.mv.mongodb_name()
    }
    /// Name of the generated credentials Secret.
    pub(crate) fn credentials_name(&self) -> String {
        self.mv.credentials_name()
    }
    /// Name of the app's ConfigMap.
    pub(crate) fn config_name(&self) -> String {
        self.mv.config_name()
    }
    /// Where the app reads the Redis URL from.
    pub(crate) fn redis_url_source(&self) -> SecretSource {
        self.mv.redis_url_source()
    }
    /// Where the app reads the MongoDB URI from.
    pub(crate) fn mongodb_uri_source(&self) -> SecretSource {
        self.mv.mongodb_uri_source()
    }
    /// Where the app reads its API token from, when one is configured.
    pub(crate) fn api_token_source(&self) -> Option<SecretSource> {
        self.mv.api_token_source()
    }
}

/// Checks a MultiVac and what [`super::dereference`] read for it. The first
/// failed check is the error; every error here waits for the user.
pub(crate) fn validate<'a>(mv: &'a MultiVac, read: &Dereferenced) -> Result<Validated<'a>> {
    let namespace = mv
        .metadata
        .namespace
        .as_deref()
        .ok_or(Error::MissingMetadata("metadata.namespace"))?;
    let owner = mv
        .controller_owner_ref(&())
        .ok_or(Error::MissingMetadata("metadata.uid"))?;
    if let Some(missing) = read.secret_keys.iter().find(|k| !k.present) {
        return Err(Error::MissingSecret {
            namespace: namespace.into(),
            name: missing.source.name.clone(),
            key: missing.source.key.clone(),
        });
    }
    let name = mv.metadata.name.as_deref().unwrap_or_default();
    check_name(name)?;
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
    let redis = store("redis", &s.redis.managed, s.redis.external.is_some())?;
    let mongodb = store("mongodb", &s.mongodb.managed, s.mongodb.external.is_some())?;
    let managed = |st: &Store| matches!(st, Store::Managed(_));
    Ok(Validated {
        mv,
        name,
        namespace,
        owner,
        spec: s,
        create_credentials: (managed(&redis) || managed(&mongodb)) && !read.credentials_exist,
        redis,
        mongodb,
    })
}

fn check_name(name: &str) -> Result<()> {
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
    Ok(())
}

/// `managed` and `external` are exclusive; neither set means managed with defaults.
fn store(what: &str, managed: &Option<ManagedStore>, external: bool) -> Result<Store> {
    match (managed, external) {
        (Some(_), true) => Err(Error::InvalidSpec(format!(
            "set only one of {what}.managed and {what}.external"
        ))),
        (_, true) => Ok(Store::External),
        (m, false) => Ok(Store::Managed(m.clone().unwrap_or_default())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::dereference::SecretKey;
    use crate::resources::testing::mv;
    use serde_json::json;

    fn check(mv: &MultiVac) -> Result<Validated<'_>> {
        validate(mv, &Dereferenced::default())
    }

    #[test]
    fn accepts_the_minimal_spec() {
        let m = mv(json!({"image": "x"}));
        let v = check(&m).unwrap();
        assert_eq!((v.name, v.namespace), ("mv", "ns"));
        assert_eq!(v.owner.uid, "1234");
        assert_eq!(v.redis, Store::Managed(ManagedStore::default()));
        assert!(v.create_credentials);
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
            let m = mv(spec.clone());
            let err = check(&m).unwrap_err();
            assert!(err.is_permanent());
            assert!(err.to_string().contains(needle), "{spec}: {err}");
        }
        let mut long = mv(json!({"image": "x"}));
        long.metadata.name = Some("a".repeat(56));
        assert!(check(&long).unwrap_err().to_string().contains("at most 55"));
        let mut digit = mv(json!({"image": "x"}));
        digit.metadata.name = Some("1mv".into());
        assert!(check(&digit).is_err());
    }

    #[test]
    fn a_missing_secret_key_is_named_and_credentials_are_created_once() {
        let m = mv(json!({"image": "x",
            "redis": {"external": {"secretRef": {"name": "r", "key": "u"}}},
            "mongodb": {"external": {"secretRef": {"name": "m"}}}}));
        let key = |name: &str, key: &str, present| SecretKey {
            source: SecretSource {
                name: name.into(),
                key: key.into(),
            },
            present,
        };
        let read = Dereferenced {
            secret_keys: vec![key("r", "u", true), key("m", "mongodb-uri", false)],
            credentials_exist: false,
        };
        let err = validate(&m, &read).unwrap_err();
        assert!(
            matches!(&err, Error::MissingSecret { name, key, .. } if name == "m" && key == "mongodb-uri"),
            "{err}"
        );
        let read = Dereferenced {
            secret_keys: vec![key("r", "u", true), key("m", "mongodb-uri", true)],
            credentials_exist: false,
        };
        let v = validate(&m, &read).unwrap();
        assert_eq!((&v.redis, &v.mongodb), (&Store::External, &Store::External));
        assert!(!v.create_credentials, "no managed store, no credentials");
        let managed = mv(json!({"image": "x"}));
        let existing = Dereferenced {
            credentials_exist: true,
            ..Default::default()
        };
        assert!(!validate(&managed, &existing).unwrap().create_credentials);
    }

    #[test]
    fn a_multivac_without_uid_is_an_error_not_an_orphan() {
        let mut m = mv(json!({"image": "m"}));
        m.metadata.uid = None;
        assert!(matches!(check(&m), Err(Error::MissingMetadata(_))));
    }
}
