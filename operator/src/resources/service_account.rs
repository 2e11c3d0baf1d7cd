//! The pods' ServiceAccount: the app never talks to the API server, so no token is mounted.

use serde_json::{Value, json};

use super::metadata;
use crate::crd::MultiVac;
use crate::error::Result;

/// ServiceAccount `<mv>` shared by all pods of the MultiVac.
pub fn build(mv: &MultiVac) -> Result<Value> {
    Ok(json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(mv, super::name(mv), "multivac")?,
        "automountServiceAccountToken": false,
        "imagePullSecrets": super::pull_secrets(mv),
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{labels, mv, owner};
    use super::*;

    #[test]
    fn service_account_mounts_no_token() {
        let m = mv(json!({"image": "x", "imagePullSecrets": [{"name": "reg"}]}));
        assert_eq!(
            build(&m).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "mv", "namespace": "ns", "labels": labels("multivac"), "ownerReferences": owner()},
                "automountServiceAccountToken": false,
                "imagePullSecrets": [{"name": "reg"}],
            })
        );
    }
}
