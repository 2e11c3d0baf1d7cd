//! Operator-driven worker autoscaling: every `workers.pollIntervalSeconds`
//! each MultiVac's Redis backlog (consumer-group lag + pending) is read and
//! the worker Deployment's `spec.replicas` is set from it (see
//! [`decision`] for the rule). The scaler owns only that field and its part of
//! the status (field manager `multivac-operator-scaler`), so it never fights
//! the reconciler or a user's edit of anything else.
//!
//! Each MultiVac is polled by its own task: hundreds of MultiVacs poll
//! concurrently and one slow or unreachable Redis delays only its own; one
//! that keeps failing is polled less and less often (see
//! [`poller::next_poll_in`]), and host names resolve asynchronously
//! ([`resolver`]), so a thousand unreachable Redis cost neither threads nor
//! a slow shutdown. The pollers' first polls spread over the interval
//! ([`poller::first_poll_in`]) and their API requests share a few slots
//! ([`poller::API_REQUESTS_IN_FLIGHT`]), so a thousand of them starting
//! together open no burst of connections to the API server.

pub(crate) mod backlog;
mod decision;
mod metrics;
mod poller;
mod resolver;
mod status;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::Semaphore;
use tokio::task::{AbortHandle, JoinSet};
use tracing::{debug, info, warn};

use crate::Context;
use crate::cache::Cached;
use crate::crd::MultiVac;

use metrics::Metrics;
use resolver::Resolver;

/// How often the set of MultiVacs is compared with the running pollers.
const POLLERS_RESYNC: Duration = Duration::from_secs(1);

/// Waits until `store` holds its first full list; false if its watch ended.
///
/// `Store::wait_until_ready` wakes only the last task that polled it (one
/// oneshot waker is shared by every clone), and the controller waits on the
/// same store, so it is polled again on a short timer instead of trusted to
/// wake this task.
async fn synced<K>(store: &Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        if let Ok(done) =
            tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await
        {
            return done.is_ok();
        }
    }
}

/// Runs the scaler until the future is dropped (on shutdown or a lost lease,
/// which aborts every polling task with it). `store` and `deployments` are
/// the controller's stores of MultiVacs and of the Deployments it made (the
/// worker replicas in force are read there, without a GET per poll).
pub(crate) async fn run(
    ctx: Arc<Context>,
    store: Store<MultiVac>,
    deployments: Store<Cached<Deployment>>,
) {
    let shared = poller::Shared {
        ctx: ctx.clone(),
        metrics: Metrics::shared(&ctx.registry),
        multivacs: store,
        deployments,
        resolver: Resolver::from_system(),
        api_slots: Arc::new(Semaphore::new(poller::API_REQUESTS_IN_FLIGHT)),
    };
    let metrics = &shared.metrics;
    let mut tasks: JoinSet<()> = JoinSet::new();

    debug!("scaler waiting for the MultiVac and worker Deployment caches");
    if !synced(&shared.multivacs).await || !synced(&shared.deployments).await {
        warn!("the MultiVac or Deployment watch stopped before syncing; scaler not started");
        return;
    }
    info!("scaler started");

    let mut pollers: HashMap<ObjectRef<MultiVac>, AbortHandle> = HashMap::new();
    loop {
        let live: HashMap<ObjectRef<MultiVac>, ()> = shared
            .multivacs
            .state()
            .iter()
            .filter(|mv| mv.metadata.deletion_timestamp.is_none())
            .map(|mv| (ObjectRef::from_obj(mv.as_ref()), ()))
            .collect();
        pollers.retain(|key, handle| {
            let keep = live.contains_key(key) && !handle.is_finished();
            if !keep {
                handle.abort();
                if !live.contains_key(key) {
                    metrics.forget(key.namespace.as_deref().unwrap_or_default(), &key.name);
                }
            }
            keep
        });
        for key in live.into_keys() {
            if pollers.contains_key(&key) {
                continue;
            }
            let poller = poller::Poller::new(&shared, key.clone());
            pollers.insert(key, tasks.spawn(poller.run()));
        }
        // Reap finished tasks so the set does not grow; a poller that ended
        // (its MultiVac went away) is not in `pollers` any more next round.
        while let Some(done) = tasks.try_join_next() {
            if let Err(e) = done
                && e.is_panic()
            {
                warn!(error = %e, "a scaler task panicked; it is restarted");
            }
        }
        tokio::time::sleep(POLLERS_RESYNC).await;
    }
}
