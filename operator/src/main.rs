//! `multivac-operator`: the controller process. Serves /metrics, /healthz and
//! /readyz, optionally waits for the leader lease, then runs the controller
//! and the scaler until SIGTERM (or until it loses the lease).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use clap::Parser;
use multivac_contract::{init_logging, on_signals};
use multivac_operator::{Cli, Context, LeaderConfig};
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;
use tracing::{error, info};

/// One thread: the operator waits on the network almost all the time (a few
/// CPU seconds to create 100 MultiVacs), and with one thread the C library's
/// malloc keeps one arena, not one per worker thread each holding on to its
/// own free fragments (about half the resident memory with two workers).
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Cli::parse();
    init_logging(args.log_format, "info,kube_lease_manager=warn");
    if let Err(e) = run(args).await {
        error!(error = %e, "operator failed");
        std::process::exit(1);
    }
}

async fn run(args: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let client = multivac_operator::client().await.map_err(|e| {
        format!("no Kubernetes client configuration (in-cluster or KUBECONFIG): {e}")
    })?;
    let registry = Arc::new(Mutex::new(Registry::default()));
    let ctx = Arc::new(Context::new(
        client.clone(),
        registry,
        args.lease_namespace.clone(),
    ));

    let listener = tokio::net::TcpListener::bind(args.metrics_bind)
        .await
        .map_err(|e| format!("cannot listen on --metrics-bind {}: {e}", args.metrics_bind))?;
    let addr = listener.local_addr().unwrap_or(args.metrics_bind);
    info!(%addr, "serving /metrics, /healthz, /readyz");
    let shutdown = on_signals();
    let http = tokio::spawn(multivac_contract::serve(
        listener,
        multivac_operator::router(ctx.clone()),
        shutdown.clone(),
    ));

    client
        .apiserver_version()
        .await
        .map_err(|e| format!("cannot reach the Kubernetes API server: {e}"))?;
    ctx.ready.store(true, Ordering::Relaxed);

    let code = if args.leader_election {
        let config = LeaderConfig::new(args.lease_name.clone(), args.lease_namespace.clone());
        let mut stop = shutdown.clone();
        match config.acquire(client, &mut stop).await? {
            None => 0,
            Some(mut leadership) => {
                ctx.metrics.leader.set(1);
                let (ctl_stop, ctl) = spawn_controller(ctx.clone(), &args);
                let mut stop = shutdown.clone();
                let lost = tokio::select! {
                    _ = leadership.lost() => true,
                    _ = stop.wait() => false,
                };
                ctx.metrics.leader.set(0);
                let _ = ctl_stop.send(());
                stop_controller(ctl).await;
                if lost {
                    error!("lost the leader lease: exiting so this replica restarts as a standby");
                    1
                } else {
                    leadership.release().await;
                    0
                }
            }
        }
    } else {
        info!("leader election disabled: running the controller");
        ctx.metrics.leader.set(1);
        let (ctl_stop, ctl) = spawn_controller(ctx.clone(), &args);
        shutdown.clone().wait().await;
        let _ = ctl_stop.send(());
        stop_controller(ctl).await;
        0
    };
    let _ = http.await;
    info!("shut down");
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

/// Waits for the controller's graceful shutdown (in-flight reconciles finish),
/// bounded: a controller still waiting for its first list would never end.
async fn stop_controller(ctl: tokio::task::JoinHandle<()>) {
    let abort = ctl.abort_handle();
    if tokio::time::timeout(std::time::Duration::from_secs(20), ctl)
        .await
        .is_err()
    {
        tracing::warn!("controller did not stop within 20 s; aborting it");
        abort.abort();
    }
}

fn spawn_controller(
    ctx: Arc<Context>,
    args: &Cli,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(multivac_operator::run(
        ctx,
        args.watch_namespace.clone(),
        args.concurrency,
        async move {
            let _ = rx.await;
        },
    ));
    (tx, handle)
}
