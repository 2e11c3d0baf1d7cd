//! Fencing: a leader that cannot prove it still holds the Lease writes
//! nothing. The lease manager's own watch may notice a lost lease only after
//! it expired (a process frozen by SIGSTOP, a long pause, a partition), while
//! a standby takes the lease the moment it expires. So every write of the
//! controller, the scaler and the event recorder goes through [`FenceLayer`],
//! a tower layer on the kube `Client` that refuses any request but a read
//! once `validity` has passed since the last renewal this process saw
//! succeed; [`Fence::expired`] then makes the process step down.
//!
//! The renewal time is the monotonic clock ([`Instant`]) when the renewal
//! request was *sent*, taken from the lease manager's own requests through
//! the same layer: a successful write of the Lease whose answer names this
//! process as the holder. The monotonic clock keeps running while the
//! process is stopped, so a leader resumed after its lease expired finds the
//! fence closed before any of its tasks can write. Writes to the stores
//! during a credentials rotation check [`Fence::check`] themselves.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use kube::client::{Body, DynBody};
use tower::{BoxError, Layer, Service};

/// Why a write was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "refused {what}: this operator last renewed its leader Lease {ago} ago and writes only within {validity:?} of a renewal (a standby may hold the Lease now); it steps down"
)]
pub struct Fenced {
    what: String,
    ago: String,
    validity: Duration,
}

/// Whether this process may write now. Cheap to clone: clones share the
/// renewal time.
#[derive(Clone, Debug)]
pub struct Fence(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// `None`: leader election is off, every write passes.
    lease: Option<Lease>,
}

#[derive(Debug)]
struct Lease {
    /// `/apis/coordination.k8s.io/v1/namespaces/<ns>/leases`
    collection: String,
    /// `<collection>/<name>`
    path: String,
    identity: String,
    validity: Duration,
    renewed: Mutex<Option<Instant>>,
}

impl Fence {
    /// Every write passes (leader election is off: one replica by contract).
    pub fn open() -> Self {
        Self(Arc::new(Inner { lease: None }))
    }

    /// Writes pass only within `validity` of the last successful renewal of
    /// Lease `namespace/name` by `identity` (closed until the first one).
    pub fn leased(namespace: &str, name: &str, identity: &str, validity: Duration) -> Self {
        let collection = format!("/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases");
        Self(Arc::new(Inner {
            lease: Some(Lease {
                path: format!("{collection}/{name}"),
                collection,
                identity: identity.into(),
                validity,
                renewed: Mutex::new(None),
            }),
        }))
    }

    /// The tower layer that enforces this fence on a kube `Client`.
    pub fn layer(&self) -> FenceLayer {
        FenceLayer(self.clone())
    }

    /// Ok while a write is allowed; `what` names the write in the error.
    pub fn check(&self, what: &str) -> Result<(), Fenced> {
        let Some(lease) = &self.0.lease else {
            return Ok(());
        };
        let renewed = *lease.renewed.lock().expect("fence lock");
        match renewed {
            Some(at) if at.elapsed() < lease.validity => Ok(()),
            _ => Err(Fenced {
                what: what.into(),
                ago: renewed.map_or_else(|| "never".into(), |at| format!("{:?}", at.elapsed())),
                validity: lease.validity,
            }),
        }
    }

    /// Resolves once writes are refused: `validity` after the last renewal
    /// (at once if there was none). Never resolves for an open fence.
    pub async fn expired(&self) {
        let Some(lease) = &self.0.lease else {
            return std::future::pending().await;
        };
        loop {
            let renewed = *lease.renewed.lock().expect("fence lock");
            let Some(deadline) = renewed.map(|at| at + lease.validity) else {
                return;
            };
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }

    /// Records a renewal sent at `sent`; the latest one counts.
    fn renewed(&self, sent: Instant) {
        if let Some(lease) = &self.0.lease {
            let mut renewed = lease.renewed.lock().expect("fence lock");
            if renewed.is_none_or(|at| at < sent) {
                *renewed = Some(sent);
            }
        }
    }

    /// A write of our Lease (the lease manager's own requests are never
    /// refused: they are how the fence opens again).
    fn is_lease_write(&self, method: &Method, path: &str) -> bool {
        self.0.lease.as_ref().is_some_and(|l| {
            !is_read(method) && (path == l.path || (method == Method::POST && path == l.collection))
        })
    }

    fn holds(&self, lease_json: &[u8]) -> bool {
        let Some(lease) = &self.0.lease else {
            return false;
        };
        serde_json::from_slice::<serde_json::Value>(lease_json)
            .is_ok_and(|v| v["spec"]["holderIdentity"].as_str() == Some(lease.identity.as_str()))
    }
}

fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// See [`Fence::layer`].
#[derive(Clone)]
pub struct FenceLayer(Fence);

impl<S> Layer<S> for FenceLayer {
    type Service = FenceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FenceService {
            inner,
            fence: self.0.clone(),
        }
    }
}

/// The service [`FenceLayer`] makes.
pub struct FenceService<S> {
    inner: S,
    fence: Fence,
}

type Answer = Response<Box<DynBody>>;

impl<S> Service<Request<Body>> for FenceService<S>
where
    S: Service<Request<Body>, Response = Answer, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = Answer;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let lease_write = self.fence.is_lease_write(&method, &path);
        if !lease_write
            && !is_read(&method)
            && let Err(refused) = self.fence.check(&format!("{method} {path}"))
        {
            return Box::pin(std::future::ready(Err(refused.into())));
        }
        let sent = Instant::now();
        let answer = self.inner.call(request);
        let fence = self.fence.clone();
        Box::pin(async move {
            let answer = answer.await?;
            if !lease_write || !answer.status().is_success() {
                return Ok(answer);
            }
            // A Lease is small: read it whole to see who holds it, then hand
            // the same bytes on.
            let (parts, body) = answer.into_parts();
            let bytes: Bytes = body.collect().await?.to_bytes();
            if fence.holds(&bytes) {
                fence.renewed(sent);
            }
            let body: Box<DynBody> = Box::new(Full::new(bytes).map_err(|never| match never {}));
            Ok(Response::from_parts(parts, body))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tower::ServiceExt;
    use tower_test::mock;

    const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/op/leases/multivac-operator";

    fn request(method: Method, path: &str) -> Request<Body> {
        Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap()
    }

    fn answer(holder: &str) -> Answer {
        let bytes = serde_json::to_vec(&json!({"spec": {"holderIdentity": holder}})).unwrap();
        Response::new(Box::new(
            Full::new(Bytes::from(bytes)).map_err(|never| match never {}),
        ))
    }

    /// A fenced service over a mock that answers every request with a Lease held by `holder`.
    fn fenced(
        validity: Duration,
        holder: &'static str,
    ) -> (
        Fence,
        impl Service<Request<Body>, Response = Answer, Error = BoxError>,
        tokio::task::JoinHandle<Vec<String>>,
    ) {
        let fence = Fence::leased("op", "multivac-operator", "me", validity);
        let (service, mut handle) = mock::pair::<Request<Body>, Answer>();
        let seen = tokio::spawn(async move {
            let mut seen = vec![];
            while let Some((req, respond)) = handle.next_request().await {
                seen.push(format!("{} {}", req.method(), req.uri().path()));
                respond.send_response(answer(holder));
            }
            seen
        });
        let service = fence.layer().layer(service.map_err(BoxError::from));
        (fence, service, seen)
    }

    async fn send(
        service: &mut impl Service<Request<Body>, Response = Answer, Error = BoxError>,
        method: Method,
        path: &str,
    ) -> Result<(), String> {
        let answer = service
            .ready()
            .await
            .unwrap()
            .call(request(method, path))
            .await
            .map_err(|e| e.to_string())?;
        // The body is handed on intact.
        let bytes = answer.into_body().collect().await.unwrap().to_bytes();
        assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_ok());
        Ok(())
    }

    #[tokio::test]
    async fn writes_pass_only_after_a_renewal_by_us_and_until_it_ages() {
        let (fence, mut svc, seen) = fenced(Duration::from_millis(300), "me");
        let deployment = "/apis/apps/v1/namespaces/ns/deployments/d";
        // Standby: reads pass, writes are refused before reaching the API server.
        send(&mut svc, Method::GET, deployment).await.unwrap();
        let refused = send(&mut svc, Method::PATCH, deployment).await.unwrap_err();
        assert!(refused.contains("never"), "{refused}");
        assert!(fence.check("x").is_err());
        // The lease manager's write of our Lease is never refused, and its
        // answer (holder: us) opens the fence.
        send(&mut svc, Method::PATCH, LEASE).await.unwrap();
        fence.check("x").unwrap();
        send(&mut svc, Method::PATCH, deployment).await.unwrap();
        send(&mut svc, Method::DELETE, deployment).await.unwrap();
        // No renewal for `validity`: closed again, and `expired` resolves.
        tokio::time::timeout(Duration::from_secs(2), fence.expired())
            .await
            .expect("expired() resolves once the validity passed");
        let refused = send(&mut svc, Method::POST, deployment).await.unwrap_err();
        assert!(refused.contains("POST"), "{refused}");
        drop(svc);
        assert_eq!(
            seen.await.unwrap(),
            [
                format!("GET {deployment}"),
                format!("PATCH {LEASE}"),
                format!("PATCH {deployment}"),
                format!("DELETE {deployment}"),
            ],
            "refused writes never reach the API server"
        );
    }

    #[tokio::test]
    async fn a_lease_write_that_shows_another_holder_does_not_renew() {
        let (fence, mut svc, _) = fenced(Duration::from_secs(60), "someone-else");
        send(&mut svc, Method::PATCH, LEASE).await.unwrap();
        assert!(fence.check("x").is_err());
        // Another Lease is not ours.
        let other = "/apis/coordination.k8s.io/v1/namespaces/op/leases/other";
        assert!(send(&mut svc, Method::PATCH, other).await.is_err());
    }

    #[tokio::test]
    async fn an_open_fence_never_refuses_nor_expires() {
        let fence = Fence::open();
        fence.check("x").unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), fence.expired())
                .await
                .is_err()
        );
    }
}
