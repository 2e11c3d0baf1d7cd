//! The value [`validate`](crate::reconcile::validate) hands to the
//! builders (`resources`) and to the credentials' steps: a MultiVac that
//! passed every check, with what the checks resolved. Only the types and their
//! pure accessors live here, below both, so neither imports the reconcile
//! that drives them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::crd::{ManagedStore, MultiVac, MultiVacSpec, SecretSource};

/// How a datastore is provided, once the spec is known to name exactly one way.
#[derive(Clone, Debug, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "two per reconcile, built once and read in place"
)]
pub(crate) enum Store {
    /// Run by the operator, with the spec's settings or the defaults.
    Managed(ManagedStore),
    /// Run by the user; the app reads its URL from a Secret the user made.
    External,
}

/// A MultiVac that passed every check, with what the checks resolved.
#[derive(Clone, Debug)]
pub(crate) struct Validated<'a> {
    /// Read through the accessors below, which name the children as the
    /// rest of the operator does; set by `validate` only.
    pub(crate) mv: &'a MultiVac,
    pub(crate) name: &'a str,
    pub(crate) namespace: &'a str,
    /// The controller ownerReference every child carries.
    pub(crate) owner: OwnerReference,
    pub(crate) spec: &'a MultiVacSpec,
    /// The app image: `spec.image`, else the operator's default.
    pub(crate) image: String,
    pub(crate) redis: Store,
    pub(crate) mongodb: Store,
    /// A store is managed and its generated credentials Secret does not exist yet.
    pub(crate) create_credentials: bool,
    /// SHA-256 of each Secret value the pods may use, by (Secret, key).
    pub(crate) secret_digests: BTreeMap<(String, String), String>,
}

impl<'a> Validated<'a> {
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
    /// Name of the pods' ServiceAccount.
    pub(crate) fn service_account_name(&self) -> String {
        self.mv.service_account_name()
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
    /// Name of the data PVC of store `component`.
    pub(crate) fn data_volume_name(&self, component: &str) -> String {
        self.mv.data_volume_name(component)
    }
    /// An annotation of the MultiVac.
    pub(crate) fn annotation(&self, key: &str) -> Option<&'a str> {
        self.mv
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .map(String::as_str)
    }
    /// Where the app reads an external Redis's CA from, when one is named.
    pub(crate) fn redis_ca_source(&self) -> Option<SecretSource> {
        self.mv.redis_ca_source()
    }
    /// Where the app reads an external MongoDB's CA from, when one is named.
    pub(crate) fn mongodb_ca_source(&self) -> Option<SecretSource> {
        self.mv.mongodb_ca_source()
    }
}
