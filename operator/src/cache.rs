//! The controller's caches: one reflector store per kind of child, fed by the
//! same watches that trigger reconciles, so a reconcile reads its children
//! from memory instead of sending a GET per child. Kinds without a store (the
//! Secrets: the operator may not list or watch them) are read from the API
//! server. Objects are slimmed before they are stored (see [`slim`]).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use kube::Resource;
use kube::runtime::reflector::{Lookup, Store};

/// Annotation `kubectl apply` keeps a copy of the whole object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The stores of one controller run, by kind.
#[derive(Clone, Default)]
pub(crate) struct Caches {
    stores: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    /// Whether each store holds its first full list.
    synced: Vec<Arc<dyn Fn() -> bool + Send + Sync>>,
}

impl Caches {
    /// Adds the store of kind `K`, replacing any earlier one.
    pub(crate) fn insert<K>(&mut self, store: Store<K>)
    where
        K: Lookup<DynamicType = ()> + Clone + Send + Sync + 'static,
    {
        let probe = store.clone();
        self.synced.push(Arc::new(move || {
            matches!(probe.wait_until_ready().now_or_never(), Some(Ok(())))
        }));
        self.stores.insert(TypeId::of::<K>(), Arc::new(store));
    }

    /// The store of kind `K`, if the controller caches that kind.
    pub(crate) fn store<K>(&self) -> Option<Store<K>>
    where
        K: Lookup<DynamicType = ()> + Clone + Send + Sync + 'static,
    {
        self.stores
            .get(&TypeId::of::<K>())
            .and_then(|s| s.downcast_ref::<Store<K>>())
            .cloned()
    }

    /// Waits until every store holds its first full list: before that, an
    /// object missing from a store may well exist, and reading it as absent
    /// would re-apply every child at each start.
    ///
    /// Polls instead of awaiting `Store::wait_until_ready`, which wakes only
    /// the last of several tasks waiting on the same store.
    pub(crate) async fn synced(&self) {
        while !self.synced.iter().all(|synced| synced()) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// What the stores keep of an object: everything but the managed fields and
/// `kubectl apply`'s copy of the object, which together are often larger
/// than the object itself and which nothing in the operator reads (the
/// comparison with the built object only looks at fields the operator sets).
pub(crate) fn slim<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Service;
    use kube::runtime::reflector::{self, ObjectRef};
    use kube::runtime::watcher::Event;
    use serde_json::json;

    #[test]
    fn slim_drops_managed_fields_and_the_last_applied_copy_only() {
        let mut d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "a", "annotations": {LAST_APPLIED: "{...}", "keep": "1"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {"selector": {}, "template": {}}}))
        .unwrap();
        slim(&mut d);
        assert_eq!(d.metadata.managed_fields, None);
        assert_eq!(
            serde_json::to_value(&d.metadata.annotations).unwrap(),
            json!({"keep": "1"})
        );
    }

    #[tokio::test]
    async fn stores_are_found_by_kind_and_synced_after_their_first_list() {
        let (store, mut writer) = reflector::store::<Deployment>();
        let mut caches = Caches::default();
        caches.insert(store);
        assert!(caches.store::<Deployment>().is_some());
        assert!(
            caches.store::<Service>().is_none(),
            "not cached: read from the API"
        );
        assert!(
            caches.synced().now_or_never().is_none(),
            "not synced before the first list"
        );
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "a", "namespace": "ns"},
            "spec": {"selector": {}, "template": {}}}))
        .unwrap();
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(d));
        writer.apply_watcher_event(&Event::InitDone);
        assert!(caches.synced().now_or_never().is_some());
        let cached = caches.store::<Deployment>().unwrap();
        assert!(cached.get(&ObjectRef::new("a").within("ns")).is_some());
    }
}
