//! SIGTERM and Ctrl-C as a value every task can watch.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Cloneable view of "has the process been asked to stop?".
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// The side that flips [`Shutdown`].
#[derive(Debug)]
pub(crate) struct ShutdownTrigger(watch::Sender<bool>);

/// A new pair, not yet triggered.
pub(crate) fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Asks every watcher to stop.
    pub(crate) fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// True once stopping was requested.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once stopping was requested.
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// A [`Shutdown`] that triggers on SIGTERM (how Kubernetes stops pods) or
/// SIGINT (Ctrl-C: how a person stops a process in a terminal). The handlers
/// are installed before it returns, so no early signal kills the process
/// without a drain.
pub fn on_signals() -> Shutdown {
    let install = |kind| signal(kind).expect("installing the SIGTERM and SIGINT handlers");
    let mut term = install(SignalKind::terminate());
    let mut int = install(SignalKind::interrupt());
    let (trigger, shutdown) = channel();
    tokio::spawn(async move {
        let signal = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal, "stop requested, draining");
        trigger.trigger();
    });
    shutdown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_trigger() {
        let (trigger, shutdown) = channel();
        let mut waiter = shutdown.clone();
        assert!(!shutdown.is_triggered());
        let waited = tokio::spawn(async move { waiter.wait().await });
        trigger.trigger();
        waited.await.unwrap();
        assert!(shutdown.is_triggered());
        // Waiting after the fact returns at once.
        shutdown.clone().wait().await;
    }

    #[tokio::test]
    async fn sigterm_triggers() {
        let mut shutdown = on_signals();
        assert!(!shutdown.is_triggered());
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("running kill");
        assert!(sent.success());
        tokio::time::timeout(std::time::Duration::from_secs(10), shutdown.wait())
            .await
            .expect("SIGTERM did not trigger the shutdown within 10 s");
    }
}
