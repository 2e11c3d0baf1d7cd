#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (`make test`). It installs what is
# missing, builds heavy tools once into a cache outside the tree, starts the real
# services the tests need (Redis and FerretDB are started by the tests themselves;
# the Kubernetes control plane here), and stops them again.
#
#   bash hack/test.sh             lints, then the tests (`make test`)
#   bash hack/test.sh --no-lint   the tests only (`make test-only`: the pipeline's
#                                 test job, after its lint jobs ran each lint once)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$MULTIVAC_ROOT"
start=$(date +%s)

lint=1
case "${1:-}" in
  --no-lint) lint=0 ;;
  "") ;;
  *) die "usage: hack/test.sh [--no-lint]" ;;
esac

log "dependencies"
MULTIVAC_TEST_REDIS_SERVER="$(bash hack/deps/redis.sh)"
MULTIVAC_TEST_FERRETDB="$(bash hack/deps/ferretdb.sh)"
export MULTIVAC_TEST_REDIS_SERVER MULTIVAC_TEST_FERRETDB
bash hack/cluster.sh build
bash hack/deps/tools.sh
bash hack/deps/promtool.sh >/dev/null

if [ "$lint" = 1 ]; then
  log "lints"
  bash hack/lint.sh
fi

log "local control plane"
MULTIVAC_CLUSTER_STATE="$(mktemp -d /tmp/multivac-cluster.XXXXXX)"
export MULTIVAC_CLUSTER_STATE
trap 'bash hack/cluster.sh down || true' EXIT
bash hack/cluster.sh up
KUBECONFIG="$(bash hack/cluster.sh kubeconfig)"
export KUBECONFIG
bash hack/cluster/acceptance.sh

log "cargo test, with the tests against real Redis, FerretDB and the control plane, and the fault suite"
cargo test --workspace --locked --no-fail-fast --features "$MULTIVAC_TEST_FEATURES"

log "install paths on the control plane"
bash hack/install-test.sh

log "monitoring kit: promtool on the rules and on the programs' /metrics"
bash hack/monitoring-test.sh

log "documentation in sync with the code"
cargo xtask check-docs

log "all tests passed in $(( $(date +%s) - start )) s"
