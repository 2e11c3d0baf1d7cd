//! The controller: watches MultiVacs and every kind of child (filtered by the
//! managed-by label, so the operator never caches unrelated objects) and runs
//! the reconciler; hands the MultiVac store to the scaler.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::runtime::controller::Controller;
use kube::runtime::watcher;
use tracing::{debug, info};

use crate::context::Context;
use crate::crd::MultiVac;
use crate::reconcile::{error_policy, reconcile};

/// Label selector of every child the operator creates.
pub const CHILD_SELECTOR: &str = "app.kubernetes.io/managed-by=multivac-operator";

/// Runs the controller and the scaler until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let children = watcher::Config::default().labels(CHILD_SELECTOR);
    let controller = Controller::new(
        Api::<MultiVac>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .owns(Api::<Deployment>::all(client.clone()), children.clone())
    .owns(Api::<Service>::all(client.clone()), children.clone())
    .owns(Api::<ConfigMap>::all(client.clone()), children.clone())
    .owns(Api::<Secret>::all(client.clone()), children.clone())
    .owns(Api::<ServiceAccount>::all(client.clone()), children.clone())
    .owns(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        children.clone(),
    )
    .owns(Api::<NetworkPolicy>::all(client.clone()), children.clone())
    .owns(Api::<PodDisruptionBudget>::all(client.clone()), children)
    .graceful_shutdown_on(shutdown);
    let scaler = tokio::spawn(crate::scaling::run(ctx.clone(), controller.store()));
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
