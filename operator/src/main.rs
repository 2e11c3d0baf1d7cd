//! `multivac-operator`: the controller process. Serves /metrics, /healthz and
//! /readyz, optionally waits for the leader lease, then runs the controller
//! and the scaler until SIGTERM, or until it loses the lease or cannot renew
//! it in time (then it exits 1, to restart as a standby).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use clap::Parser;
use multivac_contract::{init_logging, on_signals};
use multivac_operator::{Cli, Context, Fence, LeaderConfig};
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
    let leader = LeaderConfig::new(args.lease_name.clone(), args.lease_namespace.clone());
    let fence = match args.leader_election {
        true => leader.fence(),
        false => Fence::open(),
    };
    let client = client(&fence, leader.identity()).await?;
    let registry = Arc::new(Mutex::new(Registry::default()));
    let ctx = args.store_addresses.iter().fold(
        Context::new(client.clone(), registry, args.lease_namespace.clone())
            .with_fence(fence.clone())
            .with_default_app_image(args.default_app_image.clone()),
        |ctx, (service, address)| ctx.with_store_address(service, address),
    );
    let ctx = Arc::new(ctx);
    match &ctx.default_app_image {
        Some(image) => info!(%image, "default app image"),
        None => info!("no default app image: every MultiVac must set spec.image"),
    }

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

    if args.leader_election {
        let mut stop = shutdown.clone();
        let Some(mut leadership) = leader.acquire(client, &mut stop).await? else {
            let _ = http.await;
            return Ok(());
        };
        ctx.metrics.leader.set(1);
        let (ctl_stop, ctl) = spawn_controller(ctx.clone(), &args);
        let why = tokio::select! {
            _ = leadership.lost() => Some("lost the leader lease"),
            _ = fence.expired() => Some("could not renew the leader lease in time; writes are fenced off"),
            _ = stop.wait() => None,
        };
        ctx.metrics.leader.set(0);
        let _ = ctl_stop.send(());
        stop_controller(ctl).await;
        let Some(why) = why else {
            leadership.release().await;
            let _ = http.await;
            info!("shut down");
            return Ok(());
        };
        // Not released: the Lease may be another replica's by now.
        error!("{why}: exiting so this replica restarts as a standby");
        std::process::exit(1);
    }
    info!("leader election disabled: running the controller");
    ctx.metrics.leader.set(1);
    let (ctl_stop, ctl) = spawn_controller(ctx.clone(), &args);
    shutdown.clone().wait().await;
    let _ = ctl_stop.send(());
    stop_controller(ctl).await;
    let _ = http.await;
    info!("shut down");
    Ok(())
}

/// The API client: a user agent naming this process (so the API server's
/// audit log tells replicas apart) and the write fence. Without the kube
/// client's own retries of 429/503/504 answers: they sit below the fence, so a
/// retried write could go out after the fence closed (the controller and the
/// scaler retry on their own, through the fence).
async fn client(fence: &Fence, identity: &str) -> Result<kube::Client, String> {
    let no_config = |e: &dyn std::fmt::Display| {
        format!("no Kubernetes client configuration (in-cluster or KUBECONFIG): {e}")
    };
    let mut config = kube::Config::infer().await.map_err(|e| no_config(&e))?;
    let agent = format!(
        "multivac-operator/{} ({identity})",
        env!("CARGO_PKG_VERSION")
    );
    let agent = http::HeaderValue::from_str(&agent)
        .map_err(|e| format!("POD_NAME {identity:?} cannot be a user agent: {e}"))?;
    config.headers.push((http::header::USER_AGENT, agent));
    config.default_retry = false;
    let builder = kube::client::ClientBuilder::try_from(config).map_err(|e| no_config(&e))?;
    Ok(builder.with_layer(&fence.layer()).build())
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
