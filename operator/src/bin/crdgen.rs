//! Prints the MultiVac CustomResourceDefinition as YAML; the committed
//! `crds/multivacs.multivac.io.yaml` is this output (a test keeps them equal).

use kube::CustomResourceExt;
use multivac_operator::MultiVac;

fn main() {
    let crd = MultiVac::crd();
    print!(
        "{}",
        serde_yaml::to_string(&crd).expect("the CRD serializes to YAML")
    );
}
