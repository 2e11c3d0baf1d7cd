//! `/metrics`, `/healthz` and `/readyz` for Prometheus and the kubelet, in
//! the same shape as the app's (`multivac_contract::probe_routes`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use multivac_contract::{Probes, Readiness, encode_metrics, probe_routes};

use crate::context::Context;

impl Probes for Context {
    async fn readiness(&self) -> Readiness {
        let reached = if self.ready.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("the API server was not reached yet")
        };
        Readiness::default().check("kubernetes", reached)
    }

    async fn metrics(&self) -> String {
        encode_metrics(&self.registry.lock().expect("metrics registry poisoned"))
    }
}

/// The endpoint's routes.
pub fn router(ctx: Arc<Context>) -> Router {
    probe_routes(ctx)
}
