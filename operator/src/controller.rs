//! The controller: watches MultiVacs and every kind of child but Secrets
//! (filtered by the managed-by label, so the operator never caches unrelated
//! objects) and runs the reconciler; hands the MultiVac store to the scaler.
//!
//! Secrets are not watched: that would need `list` and `watch` on every Secret
//! in scope. The reconciler GETs the few it uses, and re-reads them on a timer
//! (see `reconcile::requeue_after`).

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::runtime::controller::Controller;
use kube::runtime::watcher;
use tracing::{debug, info};

use crate::context::Context;
use crate::crd::MultiVac;
use crate::reconcile::{error_policy, reconcile};

/// Label selector of every child the operator creates.
const CHILD_SELECTOR: &str = "app.kubernetes.io/managed-by=multivac-operator";

/// Runs the controller and the scaler until `shutdown` resolves. With
/// `namespace`, only MultiVacs (and children) of that namespace are watched.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = &ctx.client;
    let ns = &namespace;
    let children = watcher::Config::default().labels(CHILD_SELECTOR);
    let controller = Controller::new(
        api::<MultiVac>(client, ns),
        watcher::Config::default().any_semantic(),
    )
    .owns(api::<Deployment>(client, ns), children.clone())
    .owns(api::<Service>(client, ns), children.clone())
    .owns(api::<ConfigMap>(client, ns), children.clone())
    .owns(api::<ServiceAccount>(client, ns), children.clone())
    // Retained PVCs carry no ownerReference: mapped by their owner annotation.
    .watches(
        api::<PersistentVolumeClaim>(client, ns),
        children.clone(),
        crate::resources::owner_of,
    )
    .owns(api::<NetworkPolicy>(client, ns), children.clone())
    .owns(api::<PodDisruptionBudget>(client, ns), children.clone())
    .owns(api::<Ingress>(client, ns), children)
    .graceful_shutdown_on(shutdown);
    let scaler = tokio::spawn(crate::scaling::run(
        ctx.clone(),
        controller.store(),
        namespace.clone(),
    ));
    info!("controller started");
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => debug!(multivac = %obj, "reconciled"),
                Err(e) => debug!(error = %e, "reconcile loop"),
            }
        })
        .await;
    scaler.abort();
    info!("controller stopped");
}

fn api<K>(client: &kube::Client, namespace: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}
