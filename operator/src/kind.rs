//! The kinds of object the operator writes, named once for the builders,
//! the API calls and the ownership checks alike.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Resource;
use kube::core::ApiResource;

/// The kinds of object the reconciler writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    ServiceAccount,
    Secret,
    ConfigMap,
    Deployment,
    Service,
    PersistentVolumeClaim,
    NetworkPolicy,
    PodDisruptionBudget,
    Ingress,
}

impl Kind {
    /// Group, version and plural of the kind, for untyped requests.
    pub(crate) fn api_resource(self) -> ApiResource {
        fn of<K: Resource<DynamicType = ()>>() -> ApiResource {
            ApiResource::erase::<K>(&())
        }
        match self {
            Self::ServiceAccount => of::<ServiceAccount>(),
            Self::Secret => of::<Secret>(),
            Self::ConfigMap => of::<ConfigMap>(),
            Self::Deployment => of::<Deployment>(),
            Self::Service => of::<Service>(),
            Self::PersistentVolumeClaim => of::<PersistentVolumeClaim>(),
            Self::NetworkPolicy => of::<NetworkPolicy>(),
            Self::PodDisruptionBudget => of::<PodDisruptionBudget>(),
            Self::Ingress => of::<Ingress>(),
        }
    }

    /// The `kind` field, for logs, events and metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::ServiceAccount => "ServiceAccount",
            Self::Secret => "Secret",
            Self::ConfigMap => "ConfigMap",
            Self::Deployment => "Deployment",
            Self::Service => "Service",
            Self::PersistentVolumeClaim => "PersistentVolumeClaim",
            Self::NetworkPolicy => "NetworkPolicy",
            Self::PodDisruptionBudget => "PodDisruptionBudget",
            Self::Ingress => "Ingress",
        }
    }

    /// Kinds that hold data and outlive their MultiVac with `retention: Retain`.
    pub(crate) fn retained(self) -> bool {
        matches!(self, Self::PersistentVolumeClaim | Self::Secret)
    }
}
