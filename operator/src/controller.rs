//! The controller: watches MultiVacs and every kind of child but Secrets
//! (filtered by the managed-by label, so the operator never caches unrelated
//! objects), keeps what the watches see in reflector stores the reconciler
//! reads ([`crate::cache`]), and runs the reconciler; hands the MultiVac and
//! Deployment stores to the scaler.
//!
//! A MultiVac is reconciled when its generation, labels or annotations
//! change, not on status-only changes (the scaler's and the reconciler's own
//! status writes); a child triggers its owner on any change, its status
//! included (a Deployment becoming available makes the MultiVac Ready) and
//! its deletion (it is re-created).
//!
//! Secrets are not watched: that would need `list` and `watch` on every Secret
//! in scope. The reconciler GETs the few it uses, and re-reads them on a timer
//! (see `reconcile::requeue_after`).

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::{Predicate, WatchStreamExt, predicates, watcher};
use tracing::{debug, info};

use crate::cache::{Cached, Caches, compact, slim};
use crate::cluster::Object;
use crate::context::Context;
use crate::crd::MultiVac;
use crate::reconcile::{error_policy, reconcile};

/// Label selector of every child the operator creates.
const CHILD_SELECTOR: &str = "app.kubernetes.io/managed-by=multivac-operator";

/// Objects per page of the children's initial lists: a page's response is
/// held whole while it is decoded, and the allocator keeps the room it took.
const LIST_PAGE: u32 = 100;

/// Triggers of one MultiVac closer together than this are folded into one
/// reconcile: the watch events of the children a reconcile just wrote then
/// reach the stores before the next reconcile reads them, and a rollout's
/// status updates cost one reconcile instead of one each.
const DEBOUNCE: Duration = Duration::from_millis(500);

/// Runs the controller and the scaler until `shutdown` resolves. With
/// `namespace`, only MultiVacs (and children) of that namespace are watched;
/// at most `concurrency` MultiVacs are reconciled at once.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = &ctx.client;
    let ns = &namespace;
    let mut caches = Caches::default();

    let (multivacs, writer) = reflector::store::<MultiVac>();
    let spec_changes = watcher(
        api::<MultiVac>(client, ns),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .modify(slim)
    .reflect(writer)
    .applied_objects()
    .predicate_filter(
        predicates::generation
            .combine(predicates::labels)
            .combine(predicates::annotations),
        Default::default(),
    );

    let (deployments, deployment_writer) = cached::<Deployment>(&mut caches);
    let config = controller::Config::default()
        .concurrency(concurrency)
        .debounce(DEBOUNCE);
    let controller = Controller::for_stream(spec_changes, multivacs.clone())
        .with_config(config)
        // The reconciler reads a Deployment's counts, never its conditions.
        .owns_stream(children_slimmed(client, ns, deployment_writer, |d| {
            if let Some(status) = d.status.as_mut() {
                status.conditions = None;
            }
        }))
        .owns_stream(children::<Service>(client, ns, cached(&mut caches).1))
        .owns_stream(children::<ConfigMap>(client, ns, cached(&mut caches).1))
        .owns_stream(children::<ServiceAccount>(
            client,
            ns,
            cached(&mut caches).1,
        ))
        // Retained PVCs carry no ownerReference: mapped by their owner annotation.
        .watches_stream(
            children::<PersistentVolumeClaim>(client, ns, cached(&mut caches).1),
            crate::resources::owner_of,
        )
        .owns_stream(children::<NetworkPolicy>(client, ns, cached(&mut caches).1))
        .owns_stream(children::<PodDisruptionBudget>(
            client,
            ns,
            cached(&mut caches).1,
        ))
        .owns_stream(children::<Ingress>(client, ns, cached(&mut caches).1))
        .graceful_shutdown_on(shutdown);
    ctx.set_caches(caches);
    let scaler = tokio::spawn(crate::scaling::run(ctx.clone(), multivacs, deployments));
    info!(concurrency, "controller started");
    controller
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => debug!(multivac = %obj, "reconciled"),
                Err(e) => debug!(error = %e, "reconcile loop"),
            }
        })
        .await;
    scaler.abort();
    ctx.set_caches(Caches::default());
    info!("controller stopped");
}

/// A new store of `K`, registered in `caches`, and its writer.
fn cached<K>(caches: &mut Caches) -> (Store<Cached<K>>, Writer<Cached<K>>)
where
    K: kube::Resource<DynamicType = ()> + 'static,
{
    let (store, writer) = reflector::store::<Cached<K>>();
    caches.insert(store.clone());
    (store, writer)
}

/// The watch of the operator's children of kind `K`: each event updates the
/// store behind `writer` first, then triggers the owning MultiVac (once per
/// resourceVersion: a re-list after a lost watch triggers nothing new).
fn children<K>(
    client: &kube::Client,
    namespace: &Option<String>,
    writer: Writer<Cached<K>>,
) -> impl Stream<Item = Result<Cached<K>, watcher::Error>> + Send + 'static
where
    K: Object,
{
    children_slimmed(client, namespace, writer, |_| {})
}

/// [`children`], with `slim_more` applied to each object before it is stored.
fn children_slimmed<K>(
    client: &kube::Client,
    namespace: &Option<String>,
    writer: Writer<Cached<K>>,
    slim_more: impl FnMut(&mut K) + Send + 'static,
) -> impl Stream<Item = Result<Cached<K>, watcher::Error>> + Send + 'static
where
    K: Object,
{
    watcher(
        api::<K>(client, namespace),
        watcher::Config::default()
            .labels(CHILD_SELECTOR)
            .any_semantic()
            .page_size(LIST_PAGE),
    )
    .default_backoff()
    .modify(slim_more)
    .map_ok(compact)
    .reflect(writer)
    .touched_objects()
    .predicate_filter(predicates::resource_version, Default::default())
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
