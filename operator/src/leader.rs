//! Leader election on a `coordination.k8s.io` Lease (kube-lease-manager), so
//! that of several operator replicas only one reconciles and scales. Standbys
//! wait; the leader that loses its lease stops and exits non-zero, so its pod
//! restarts into standby instead of running a second, stale controller.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use multivac_contract::Shutdown;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::error::{Error, Result};

/// Seconds a lease stays valid after its last renewal.
const LEASE_DURATION_SECONDS: u64 = 15;
/// The holder renews this many seconds before expiry, i.e. about every 5 s.
const LEASE_GRACE_SECONDS: u64 = 10;

/// Which Lease, and who we are.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    lease_name: String,
    namespace: String,
    identity: String,
}

/// The identity written into the Lease: `POD_NAME`, else `hostname-pid`.
fn default_identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "multivac-operator".into());
        format!("{host}-{}", std::process::id())
    })
}

/// A held lease; [`Leadership::release`] gives it up for the next replica.
pub struct Leadership {
    state: watch::Receiver<bool>,
    task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
    identity: String,
}

impl LeaderConfig {
    /// The Lease `lease_name` in `namespace`, held as `POD_NAME` (else `hostname-pid`).
    pub fn new(lease_name: String, namespace: String) -> Self {
        Self {
            lease_name,
            namespace,
            identity: default_identity(),
        }
    }

    /// Stands by until this process holds the lease. Returns `None` when
    /// `shutdown` fired first.
    pub async fn acquire(
        &self,
        client: Client,
        shutdown: &mut Shutdown,
    ) -> Result<Option<Leadership>> {
        let manager = LeaseManagerBuilder::new(client, &self.lease_name)
            .with_namespace(&self.namespace)
            .with_identity(&self.identity)
            .with_duration(LEASE_DURATION_SECONDS)
            .with_grace(LEASE_GRACE_SECONDS)
            .with_field_manager(format!("multivac-operator-lease-{}", self.identity))
            .build()
            .await
            .map_err(|e| Error::Leader(e.to_string()))?;
        let (mut state, task) = manager.watch().await;
        info!(lease = %self.lease_name, namespace = %self.namespace, identity = %self.identity,
            "standing by: waiting to acquire the leader lease");
        loop {
            if *state.borrow_and_update() {
                info!(lease = %self.lease_name, identity = %self.identity, "acquired leadership");
                return Ok(Some(Leadership {
                    state,
                    task,
                    identity: self.identity.clone(),
                }));
            }
            tokio::select! {
                changed = state.changed() => {
                    if changed.is_err() {
                        return Err(Error::Leader(format!("lease manager stopped: {:?}", task.await)));
                    }
                }
                _ = shutdown.wait() => {
                    drop(state);
                    let _ = task.await;
                    return Ok(None);
                }
            }
        }
    }
}

impl Leadership {
    /// Resolves when the lease is lost (another replica took it, or it could not be renewed).
    pub async fn lost(&mut self) {
        loop {
            if !*self.state.borrow_and_update() {
                warn!(identity = %self.identity, "lost leadership");
                return;
            }
            if self.state.changed().await.is_err() {
                warn!(identity = %self.identity, "lease manager stopped; treating as lost leadership");
                return;
            }
        }
    }

    /// Gives the lease up at once (graceful shutdown), so a standby takes over
    /// without waiting for expiry.
    pub async fn release(self) {
        drop(self.state);
        // Bounded: if the API server is gone, the lease simply expires.
        match tokio::time::timeout(std::time::Duration::from_secs(5), self.task).await {
            Ok(Ok(Ok(_))) => info!(identity = %self.identity, "released the leader lease"),
            Ok(Ok(Err(e))) => {
                warn!(identity = %self.identity, error = %e, "could not release the leader lease")
            }
            Ok(Err(e)) => warn!(identity = %self.identity, error = %e, "lease task failed"),
            Err(_) => {
                warn!(identity = %self.identity, "releasing the lease timed out; it will expire")
            }
        }
    }
}
