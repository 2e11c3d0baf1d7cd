//! The API calls of one reconcile, all in the MultiVac's namespace. Every
//! read of a live object goes through [`Cluster::get`] or
//! [`Cluster::metadata`], which answer from the controller's stores
//! ([`crate::cache`]) for the kinds it watches and ask the API server for the
//! others (Secrets); [`Cluster::live_metadata`] must stay a request to the
//! API server. Every write is counted in
//! `multivac_operator_api_writes_total`.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::context::Context;
use crate::crd::{FIELD_MANAGER, MultiVac};
use crate::error::Result;
use crate::kind::Kind;

/// A namespaced kind the reconciler reads or writes.
pub(crate) trait Object:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
}

impl<K> Object for K where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned
        + Serialize
        + Send
        + Sync
        + 'static
{
}

/// The API server as one reconcile sees it.
pub(crate) struct Cluster<'a> {
    ctx: &'a Context,
    namespace: &'a str,
}

impl<'a> Cluster<'a> {
    pub(crate) fn new(ctx: &'a Context, namespace: &'a str) -> Self {
        Self { ctx, namespace }
    }

    fn api<K: Object>(&self) -> Api<K> {
        Api::namespaced(self.ctx.client.clone(), self.namespace)
    }

    fn dynamic(&self, kind: Kind) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.ctx.client.clone(),
            self.namespace,
            &kind.api_resource(),
        )
    }

    /// The live object, if it exists: from the controller's store of `K`
    /// (once it holds its first list), else from the API server.
    pub(crate) async fn get<K: Object>(&self, name: &str) -> Result<Option<K>> {
        let caches = self.ctx.caches();
        match caches.store::<K>() {
            Some(store) => {
                caches.synced().await;
                let key = ObjectRef::new(name).within(self.namespace);
                Ok(store.get(&key).map(|o| o.object()).transpose()?)
            }
            None => Ok(self.api::<K>().get_opt(name).await?),
        }
    }

    /// The live object's metadata, if it exists (from the store of its kind
    /// like [`Self::get`]; a metadata-only GET for a kind without one).
    pub(crate) async fn metadata(&self, kind: Kind, name: &str) -> Result<Option<ObjectMeta>> {
        let cached = match kind {
            Kind::ServiceAccount => self.cached_metadata::<ServiceAccount>(name).await,
            Kind::Secret => self.cached_metadata::<Secret>(name).await,
            Kind::ConfigMap => self.cached_metadata::<ConfigMap>(name).await,
            Kind::Deployment => self.cached_metadata::<Deployment>(name).await,
            Kind::Service => self.cached_metadata::<Service>(name).await,
            Kind::PersistentVolumeClaim => {
                self.cached_metadata::<PersistentVolumeClaim>(name).await
            }
            Kind::NetworkPolicy => self.cached_metadata::<NetworkPolicy>(name).await,
            Kind::PodDisruptionBudget => self.cached_metadata::<PodDisruptionBudget>(name).await,
            Kind::Ingress => self.cached_metadata::<Ingress>(name).await,
        };
        if let Some(meta) = cached {
            return Ok(meta);
        }
        self.live_metadata(kind, name).await
    }

    /// The object's metadata as the API server has it, never from a cache:
    /// whether a name is free must not be judged from caches that hold only
    /// the operator's own (labelled) objects.
    pub(crate) async fn live_metadata(&self, kind: Kind, name: &str) -> Result<Option<ObjectMeta>> {
        Ok(self
            .dynamic(kind)
            .get_metadata_opt(name)
            .await?
            .map(|m| m.metadata))
    }

    /// `Some(metadata if present)` when the controller caches `K`.
    async fn cached_metadata<K: Object>(&self, name: &str) -> Option<Option<ObjectMeta>> {
        let caches = self.ctx.caches();
        let store = caches.store::<K>()?;
        caches.synced().await;
        let key = ObjectRef::new(name).within(self.namespace);
        Some(store.get(&key).map(|o| o.meta().clone()))
    }

    /// Server-side applies `body` as the reconciler and returns the object as stored.
    pub(crate) async fn apply<K: Object>(&self, name: &str, body: &Value) -> Result<K> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let applied = self
            .api::<K>()
            .patch(name, &params, &Patch::Apply(body))
            .await?;
        self.ctx.metrics.write(&K::kind(&()));
        Ok(applied)
    }

    /// Creates `object`; false when an object of that name already exists
    /// (another writer won a race: its object is kept as it is).
    pub(crate) async fn create<K: Object>(&self, object: &K) -> Result<bool> {
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match self.api::<K>().create(&params, object).await {
            Ok(_) => {
                self.ctx.metrics.write(&K::kind(&()));
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Changes an object's metadata with a strategic merge patch (for objects
    /// no server-side apply may rewrite: the credentials Secret).
    pub(crate) async fn patch_metadata(&self, kind: Kind, name: &str, patch: &Value) -> Result<()> {
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        self.dynamic(kind)
            .patch(name, &params, &Patch::Strategic(patch))
            .await?;
        self.ctx.metrics.write(kind.as_str());
        Ok(())
    }

    /// Deletes an object; false when it was already gone.
    pub(crate) async fn delete(&self, kind: Kind, name: &str) -> Result<bool> {
        match self.dynamic(kind).delete(name, &Default::default()).await {
            Ok(_) => {
                self.ctx.metrics.write(kind.as_str());
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// JSON-merge-patches a Secret (a rotation step of the credentials). The
    /// patch carries the resourceVersion it was computed from, so the API
    /// server refuses it (409) if anyone wrote the Secret since.
    pub(crate) async fn patch_secret(&self, name: &str, body: &Value) -> Result<()> {
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        self.api::<Secret>()
            .patch(name, &params, &Patch::Merge(body))
            .await?;
        self.ctx.metrics.write("Secret");
        Ok(())
    }

    /// Server-side applies the reconciler's fields of the MultiVac's status.
    pub(crate) async fn apply_status(&self, mv: &MultiVac, body: &Value) -> Result<()> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.api::<MultiVac>()
            .patch_status(&mv.name_any(), &params, &Patch::Apply(body))
            .await?;
        self.ctx.metrics.write("MultiVac/status");
        Ok(())
    }
}
