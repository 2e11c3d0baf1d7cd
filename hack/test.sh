#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (`make test`). It installs what is
# missing, builds heavy tools once into a cache outside the tree, starts the real
# services the tests need (Redis and FerretDB are started by the tests themselves;
# the Kubernetes control plane here), and stops them again.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$MULTIVAC_ROOT"
start=$(date +%s)

log "dependencies"
MULTIVAC_TEST_REDIS_SERVER="$(bash hack/deps/redis.sh)"
MULTIVAC_TEST_FERRETDB="$(bash hack/deps/ferretdb.sh)"
export MULTIVAC_TEST_REDIS_SERVER MULTIVAC_TEST_FERRETDB
bash hack/cluster.sh build
bash hack/deps/tools.sh

log "formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked --features multivac/integration -- -D warnings
bash hack/lint.sh

log "local control plane"
MULTIVAC_CLUSTER_STATE="$(mktemp -d /tmp/multivac-cluster.XXXXXX)"
export MULTIVAC_CLUSTER_STATE
trap 'bash hack/cluster.sh down || true' EXIT
bash hack/cluster.sh up
KUBECONFIG="$(bash hack/cluster.sh kubeconfig)"
export KUBECONFIG
bash hack/cluster/acceptance.sh

log "cargo test"
cargo test --workspace --locked --no-fail-fast --features multivac/integration

log "install paths on the control plane"
bash hack/install-test.sh

log "documentation in sync with the code"
bash hack/docs-check.sh

log "all tests passed in $(( $(date +%s) - start )) s"
