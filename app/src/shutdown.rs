//! SIGTERM and Ctrl-C as a value every task can watch.

use tokio::sync::watch;

/// Cloneable view of "has the process been asked to stop?".
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// The side that flips [`Shutdown`]; tests use it to stop a worker in-process.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// A new pair, not yet triggered.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Asks every watcher to stop.
    pub fn trigger(&self) {
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
/// Ctrl-C (how a person stops the demo).
pub fn on_signals() -> Shutdown {
    let (trigger, shutdown) = channel();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing the SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("stop requested, draining");
        trigger.trigger();
    });
    shutdown
}
