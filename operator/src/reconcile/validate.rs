//! Pure checks the schema cannot express (or that must hold even when an
//! older CRD without the CEL rules is installed). What passes becomes a
//! [`Validated`], the only input the builders take: a value of it proves the
//! checks ran, and it carries what they resolved (namespace, owner, how each
//! store is provided), so building cannot fail on bad input.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::Resource;
use kube_quantity::ParsedQuantity;
use multivac_contract::secret_key;

use super::dereference::Dereferenced;
use super::ownership::{Claim, Owner, claim};
use crate::crd::{
    MAX_NAME_LEN, ManagedStore, MultiVac, OPERATOR_ANNOTATION_PREFIX, OPERATOR_LABELS, Placement,
    message,
};
use crate::credentials::{Credentials, digest};
use crate::error::{Error, Result};
use crate::kind::Kind;
use crate::validated::{Store, Validated};

/// Checks a MultiVac and what [`super::dereference`] read for it, and
/// resolves its app image (`default_image`: the operator's). The first
/// failed check is the error; every error here waits for the user.
pub(crate) fn validate<'a>(
    mv: &'a MultiVac,
    read: &Dereferenced,
    default_image: Option<&str>,
) -> Result<Validated<'a>> {
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
    let image = match s.image.as_deref() {
        Some(i) if i.trim().is_empty() => {
            return Err(Error::InvalidSpec("spec.image must not be empty".into()));
        }
        Some(i) => i.to_owned(),
        None => default_image.ok_or(Error::NoAppImage)?.to_owned(),
    };
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
    let redis_store = s.redis.managed.as_ref().map(|m| m.store.clone());
    let redis = store("redis", &redis_store, s.redis.external.is_some())?;
    let mongodb = store("mongodb", &s.mongodb.managed, s.mongodb.external.is_some())?;
    check_resources("spec.server.resources", &s.server.resources)?;
    check_resources("spec.workers.resources", &s.workers.resources)?;
    check_placement("spec.server", &s.server.placement)?;
    check_placement("spec.workers", &s.workers.placement)?;
    check_annotations(
        "spec.server.service.annotations",
        &s.server.service.annotations,
    )?;
    if let Some(ingress) = &s.server.ingress {
        check_annotations("spec.server.ingress.annotations", &ingress.annotations)?;
        if ingress.tls_secret_name.is_some() && ingress.host.is_none() {
            return Err(Error::InvalidSpec(format!(
                "spec.server.ingress: Invalid value: {}",
                message::TLS_WITHOUT_HOST
            )));
        }
    }
    for (what, store) in [("redis", &redis), ("mongodb", &mongodb)] {
        if let Store::Managed(m) = store {
            let path = format!("spec.{what}.managed");
            check_resources(&format!("{path}.resources"), &m.resources)?;
            quantity(&format!("{path}.storage.size"), &m.storage.size)?;
            check_placement(&path, &m.placement)?;
        }
    }
    let managed = |st: &Store| matches!(st, Store::Managed(_));
    let create_credentials = (managed(&redis) || managed(&mongodb)) && read.credentials.is_none();
    if create_credentials && !read.data_volumes.is_empty() {
        return Err(Error::CredentialsMissing {
            namespace: namespace.into(),
            secret: mv.credentials_name(),
            volumes: read.data_volumes.clone(),
        });
    }
    let mut secret_digests: BTreeMap<(String, String), String> = read
        .secret_keys
        .iter()
        .filter_map(|k| {
            Some((
                (k.source.name.clone(), k.source.key.clone()),
                k.digest.clone()?,
            ))
        })
        .collect();
    // A credentials Secret that is not this MultiVac's is neither used nor
    // checked: the apply reports it as a conflict and leaves it alone.
    let ours = |creds: &&Credentials| {
        let owner = Owner::new(owner.clone(), namespace);
        matches!(claim(Kind::Secret, &creds.meta, &owner), Claim::Ours)
    };
    if let Some(creds) = read.credentials.as_ref().filter(ours) {
        if let Some(key) = creds.missing_keys().first() {
            return Err(Error::MissingSecret {
                namespace: namespace.into(),
                name: creds.name.clone(),
                key: key.to_string(),
            });
        }
        for key in [secret_key::REDIS_URL, secret_key::MONGODB_URI] {
            if let Some(value) = creds.value(key) {
                secret_digests.insert((creds.name.clone(), key.into()), digest(value.as_bytes()));
            }
        }
    }
    Ok(Validated {
        mv,
        name,
        namespace,
        owner,
        spec: s,
        image,
        create_credentials,
        secret_digests,
        redis,
        mongodb,
    })
}

/// The CRD's rules on the name, for a CRD installed without them.
fn check_name(name: &str) -> Result<()> {
    let invalid = |message: &str| {
        Err(Error::InvalidSpec(format!(
            "metadata.name: Invalid value: {name:?}: {message}"
        )))
    };
    if name.len() > MAX_NAME_LEN {
        return invalid(message::NAME_LENGTH);
    }
    let dns_label = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !dns_label {
        return invalid(message::NAME_CHARACTERS);
    }
    Ok(())
}

/// The CRD's rule on a quantity field, for a CRD installed without it.
fn quantity(path: &str, q: &Quantity) -> Result<ParsedQuantity> {
    ParsedQuantity::try_from(q).map_err(|_| {
        Error::InvalidSpec(format!(
            "{path}: Invalid value: {:?}: {}",
            q.0,
            message::QUANTITY
        ))
    })
}

/// The CRD's rules on a `resources` block: quantities, requests within limits.
fn check_resources(path: &str, resources: &Option<ResourceRequirements>) -> Result<()> {
    let Some(r) = resources else { return Ok(()) };
    let (requests, limits) = (
        r.requests.clone().unwrap_or_default(),
        r.limits.clone().unwrap_or_default(),
    );
    for (key, map) in [("requests", &requests), ("limits", &limits)] {
        for (name, q) in map {
            quantity(&format!("{path}.{key}[{name}]"), q)?;
        }
    }
    for (name, request) in &requests {
        let Some(limit) = limits.get(name) else {
            continue;
        };
        if quantity(path, request)? > quantity(path, limit)? {
            return Err(Error::InvalidSpec(format!(
                "{path}: Invalid value: {}: requests {} > limits {} for {name}",
                message::REQUESTS_ABOVE_LIMITS,
                request.0,
                limit.0
            )));
        }
    }
    Ok(())
}

/// The CRD's rules on `podLabels` and `podAnnotations`, for a CRD installed
/// without them: the pods keep the operator's labels, which select them.
fn check_placement(path: &str, placement: &Placement) -> Result<()> {
    if let Some(key) = placement
        .pod_labels
        .keys()
        .find(|k| OPERATOR_LABELS.contains(&k.as_str()))
    {
        return Err(Error::InvalidSpec(format!(
            "{path}.podLabels: Invalid value: {key:?}: {}",
            message::OPERATOR_LABEL
        )));
    }
    check_annotations(
        &format!("{path}.podAnnotations"),
        &placement.pod_annotations,
    )
}

/// The CRD's rule on annotations a user sets: none under `multivac.io/`.
fn check_annotations(path: &str, annotations: &BTreeMap<String, String>) -> Result<()> {
    match annotations
        .keys()
        .find(|k| k.starts_with(OPERATOR_ANNOTATION_PREFIX))
    {
        Some(key) => Err(Error::InvalidSpec(format!(
            "{path}: Invalid value: {key:?}: {}",
            message::OPERATOR_ANNOTATION
        ))),
        None => Ok(()),
    }
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
    use crate::crd::SecretSource;
    use crate::credentials::Credentials;
    use crate::reconcile::dereference::SecretKey;
    use crate::resources::testing::mv;
    use serde_json::json;

    fn check(mv: &MultiVac) -> Result<Validated<'_>> {
        validate(mv, &Dereferenced::default(), None)
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
    fn the_image_is_the_specs_else_the_operators_default_else_an_error() {
        let named = mv(json!({"image": "mine:1"}));
        let unnamed = mv(json!({}));
        let read = Dereferenced::default();
        assert_eq!(
            validate(&named, &read, Some("default:2")).unwrap().image,
            "mine:1"
        );
        assert_eq!(
            validate(&unnamed, &read, Some("default:2")).unwrap().image,
            "default:2"
        );
        let err = validate(&unnamed, &read, None).unwrap_err();
        assert!(matches!(err, Error::NoAppImage) && err.is_permanent());
        assert!(
            err.to_string()
                .contains("MULTIVAC_OPERATOR_DEFAULT_APP_IMAGE"),
            "{err}"
        );
        let empty = mv(json!({"image": " "}));
        assert!(matches!(
            validate(&empty, &read, Some("d")),
            Err(Error::InvalidSpec(_))
        ));
    }

    #[test]
    fn operator_labels_and_annotations_cannot_be_set_by_the_spec() {
        for (spec, needle) in [
            (
                json!({"image": "x", "server": {"podLabels": {"app.kubernetes.io/instance": "other"}}}),
                format!(
                    "spec.server.podLabels: Invalid value: \"app.kubernetes.io/instance\": {}",
                    message::OPERATOR_LABEL
                ),
            ),
            (
                json!({"image": "x", "workers": {"podAnnotations": {"multivac.io/config-hash": "x"}}}),
                format!(
                    "spec.workers.podAnnotations: Invalid value: \"multivac.io/config-hash\": {}",
                    message::OPERATOR_ANNOTATION
                ),
            ),
            (
                json!({"image": "x", "redis": {"managed": {"podLabels": {"app.kubernetes.io/component": "worker"}}}}),
                "spec.redis.managed.podLabels".to_owned(),
            ),
            (
                json!({"image": "x", "server": {"service": {"annotations": {"multivac.io/applied-hash": "0"}}}}),
                "spec.server.service.annotations".to_owned(),
            ),
            (
                json!({"image": "x", "server": {"ingress": {"annotations": {"multivac.io/owner": "x"}}}}),
                "spec.server.ingress.annotations".to_owned(),
            ),
            (
                json!({"image": "x", "server": {"ingress": {"tlsSecretName": "tls"}}}),
                message::TLS_WITHOUT_HOST.to_owned(),
            ),
        ] {
            let m = mv(spec.clone());
            let err = check(&m).unwrap_err().to_string();
            assert!(err.contains(&needle), "{spec}: {err}");
        }
        // Other app.kubernetes.io labels and other annotations are the user's.
        let ok = mv(json!({"image": "x",
            "server": {"podLabels": {"app.kubernetes.io/version": "1", "team": "a"},
                       "podAnnotations": {"sidecar.istio.io/inject": "true"},
                       "ingress": {"host": "mv.example.com", "tlsSecretName": "tls"}},
            "mongodb": {"managed": {"podAnnotations": {"backup.velero.io/backup-volumes": "data"}}}}));
        check(&ok).unwrap();
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
    }

    /// The CRD's rules, checked again with the same messages (the same
    /// specs are refused by the API server in operator/tests/reconcile.rs).
    #[test]
    fn rejects_what_the_crd_rules_refuse_with_their_messages() {
        let named = |name: &str| {
            let mut m = mv(json!({"image": "x"}));
            m.metadata.name = Some(name.into());
            m
        };
        for (name, message) in [
            ("a".repeat(56), message::NAME_LENGTH),
            ("a.b".into(), message::NAME_CHARACTERS),
            ("1mv".into(), message::NAME_CHARACTERS),
            ("mv-".into(), message::NAME_CHARACTERS),
            ("Mv".into(), message::NAME_CHARACTERS),
        ] {
            let m = named(&name);
            let err = check(&m).unwrap_err().to_string();
            assert!(
                err.contains(message) && err.contains(&name),
                "{name}: {err}"
            );
        }
        for name in ["a".repeat(55), "a-1".into(), "default".into()] {
            assert!(check(&named(&name)).is_ok(), "{name}");
        }
        for (spec, needle) in [
            (
                json!({"image": "x", "redis": {"managed": {"storage": {"size": "lots"}}}}),
                format!(
                    "spec.redis.managed.storage.size: Invalid value: \"lots\": {}",
                    message::QUANTITY
                ),
            ),
            (
                json!({"image": "x", "server": {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}}}}),
                format!(
                    "spec.server.resources: Invalid value: {}",
                    message::REQUESTS_ABOVE_LIMITS
                ),
            ),
            (
                json!({"image": "x", "workers": {"resources": {"requests": {"memory": "1025Mi"}, "limits": {"memory": "1Gi"}}}}),
                format!(
                    "spec.workers.resources: Invalid value: {}",
                    message::REQUESTS_ABOVE_LIMITS
                ),
            ),
            (
                json!({"image": "x", "mongodb": {"managed": {"resources": {"requests": {"nvidia.com/gpu": 2}, "limits": {"nvidia.com/gpu": 1}}}}}),
                format!(
                    "spec.mongodb.managed.resources: Invalid value: {}",
                    message::REQUESTS_ABOVE_LIMITS
                ),
            ),
            (
                json!({"image": "x", "redis": {"managed": {"resources": {"limits": {"cpu": "lots"}}}}}),
                format!(
                    "spec.redis.managed.resources.limits[cpu]: Invalid value: \"lots\": {}",
                    message::QUANTITY
                ),
            ),
        ] {
            let m = mv(spec.clone());
            let err = check(&m).unwrap_err().to_string();
            assert!(err.contains(&needle), "{spec}: {err}");
        }
        // Equal, below, other units, an external store's unused defaults: accepted.
        let ok = mv(json!({"image": "x",
            "server": {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 1, "memory": "1024Mi"}}},
            "redis": {"managed": {"storage": {"size": 2147483648_i64}}}}));
        check(&ok).unwrap();
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
            digest: present.then(|| format!("digest-of-{name}")),
        };
        let read = Dereferenced {
            secret_keys: vec![key("r", "u", true), key("m", "mongodb-uri", false)],
            ..Default::default()
        };
        let err = validate(&m, &read, None).unwrap_err();
        assert!(
            matches!(&err, Error::MissingSecret { name, key, .. } if name == "m" && key == "mongodb-uri"),
            "{err}"
        );
        let read = Dereferenced {
            secret_keys: vec![key("r", "u", true), key("m", "mongodb-uri", true)],
            ..Default::default()
        };
        let v = validate(&m, &read, None).unwrap();
        assert_eq!((&v.redis, &v.mongodb), (&Store::External, &Store::External));
        assert!(!v.create_credentials, "no managed store, no credentials");
        assert_eq!(
            v.secret_digests[&("m".to_string(), "mongodb-uri".to_string())],
            "digest-of-m"
        );
        let managed = mv(json!({"image": "x"}));
        let existing = Dereferenced {
            credentials: Some(credentials(json!({"redis-password": "p", "redis-url": "u",
                "mongodb-username": "multivac", "mongodb-password": "q", "mongodb-uri": "v"}))),
            ..Default::default()
        };
        let v = validate(&managed, &existing, None).unwrap();
        assert!(!v.create_credentials);
        assert_eq!(
            v.secret_digests[&("mv-credentials".to_string(), "redis-url".to_string())],
            digest(b"u")
        );
    }

    fn credentials(data: serde_json::Value) -> Credentials {
        Credentials::from_secret(
            &serde_json::from_value(
                // This MultiVac's: a retained Secret of `ns/mv`.
                json!({"metadata": {"name": "mv-credentials",
                    "labels": {"app.kubernetes.io/managed-by": "multivac-operator"},
                    "annotations": {"multivac.io/owner": "ns/mv"}}, "stringData": data}),
            )
            .unwrap(),
        )
    }

    #[test]
    fn no_new_passwords_over_existing_data() {
        let m = mv(json!({"image": "x"}));
        let orphaned = Dereferenced {
            data_volumes: vec!["mv-mongodb-data".into()],
            ..Default::default()
        };
        let err = validate(&m, &orphaned, None).unwrap_err();
        assert!(err.is_permanent());
        let text = err.to_string();
        for needle in ["ns/mv-credentials", "mv-mongodb-data", "backup", "delete"] {
            assert!(text.contains(needle), "{needle:?} in {text}");
        }
        // No data volume: new passwords are safe.
        assert!(
            validate(&m, &Dereferenced::default(), None)
                .unwrap()
                .create_credentials
        );
        // A Secret restored without one of its keys is named, not used.
        let partial = Dereferenced {
            credentials: Some(credentials(json!({"redis-password": "p"}))),
            ..Default::default()
        };
        assert!(matches!(
            validate(&m, &partial, None),
            Err(Error::MissingSecret { key, .. }) if key == "redis-url"
        ));
    }

    #[test]
    fn a_multivac_without_uid_is_an_error_not_an_orphan() {
        let mut m = mv(json!({"image": "m"}));
        m.metadata.uid = None;
        assert!(matches!(check(&m), Err(Error::MissingMetadata(_))));
    }
}
