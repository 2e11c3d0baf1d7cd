//! The pods' ServiceAccount: the app never talks to the API server, so no token is mounted.

use k8s_openapi::api::core::v1::ServiceAccount;
use serde_json::json;

use super::{metadata, typed};
use crate::error::Result;
use crate::validated::Validated;

/// ServiceAccount `<mv>-multivac` shared by all pods of the MultiVac.
pub(super) fn build(mv: &Validated) -> Result<ServiceAccount> {
    typed(json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(mv, &mv.service_account_name(), "multivac"),
        "automountServiceAccountToken": false,
        "imagePullSecrets": super::pull_secrets(mv),
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{json_of, labels, mv, owner, validated};
    use super::*;

    #[test]
    fn service_account_mounts_no_token() {
        let m = mv(json!({"image": "x", "imagePullSecrets": [{"name": "reg"}]}));
        assert_eq!(
            json_of(&build(&validated(&m)).unwrap()),
            json!({
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "mv-multivac", "namespace": "ns", "labels": labels("multivac"), "ownerReferences": owner()},
                "automountServiceAccountToken": false,
                "imagePullSecrets": [{"name": "reg"}],
            })
        );
    }
}
