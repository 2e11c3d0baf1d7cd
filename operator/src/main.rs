//! `multivac-operator`: the controller process. Serves /metrics, /healthz and
//! /readyz, optionally waits for the leader lease, then runs the controller
//! and the scaler until SIGTERM (or until it loses the lease).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use clap::Parser;
use multivac_contract::{LogFormat, init_logging, on_signals};
use multivac_operator::context::Context;
use multivac_operator::leader::{self, LeaderConfig};
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;
use tracing::{error, info};

/// Reconciles MultiVac resources (multivac.io/v1alpha1) into running MultiVACs.
#[derive(Debug, Parser)]
#[command(name = "multivac-operator", version, about)]
struct Args {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "MULTIVAC_OPERATOR_METRICS_BIND",
        default_value = "0.0.0.0:8080"
    )]
    metrics_bind: SocketAddr,
    /// Log line format.
    #[arg(
        long,
        env = "MULTIVAC_OPERATOR_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    /// Run only while holding the leader Lease (needed with more than one replica).
    #[arg(long, env = "MULTIVAC_OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    leader_election: bool,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "MULTIVAC_OPERATOR_LEASE_NAME",
        default_value = "multivac-operator"
    )]
    lease_name: String,
    /// Namespace of the leader Lease; also where the operator's pods run.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "MULTIVAC_OPERATOR_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    init_logging(args.log_format, "info,kube_lease_manager=warn");
    if let Err(e) = run(args).await {
        error!(error = %e, "operator failed");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let client = kube::Client::try_default().await.map_err(|e| {
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
        multivac_operator::http::router(ctx.clone()),
        shutdown.clone(),
    ));

    client
        .apiserver_version()
        .await
        .map_err(|e| format!("cannot reach the Kubernetes API server: {e}"))?;
    ctx.ready.store(true, Ordering::Relaxed);

    let code = if args.leader_election {
        let config = LeaderConfig {
            lease_name: args.lease_name,
            namespace: args.lease_namespace,
            identity: leader::default_identity(),
        };
        let mut stop = shutdown.clone();
        match leader::acquire(client, &config, &mut stop).await? {
            None => 0,
            Some(mut leadership) => {
                ctx.metrics.leader.set(1);
                let (ctl_stop, ctl) = spawn_controller(ctx.clone(), args.watch_namespace.clone());
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
        let (ctl_stop, ctl) = spawn_controller(ctx.clone(), args.watch_namespace.clone());
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
    namespace: Option<String>,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(multivac_operator::controller::run(
        ctx,
        namespace,
        async move {
            let _ = rx.await;
        },
    ));
    (tx, handle)
}
