#!/usr/bin/env bash
# `make faults`: the fault suite (app/tests/faults.rs) on real redis-server,
# FerretDB and multivac processes that it starts itself on free loopback
# ports: MongoDB killed and restarted, Redis full, Redis killed and restarted
# from its AOF, a worker SIGKILLed, a worker over its memory limit (a cgroup,
# else prlimit), a datum MongoDB refuses, a server stopped under load. It
# prints one line per fault and ends with `faults: N passed, M failed`; the
# exit status is non-zero on any failure. A step of `make test`.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$MULTIVAC_ROOT"

MULTIVAC_TEST_REDIS_SERVER="${MULTIVAC_TEST_REDIS_SERVER:-$(bash hack/deps/redis.sh)}"
MULTIVAC_TEST_FERRETDB="${MULTIVAC_TEST_FERRETDB:-$(bash hack/deps/ferretdb.sh)}"
export MULTIVAC_TEST_REDIS_SERVER MULTIVAC_TEST_FERRETDB
log "fault suite (about a minute once built)"
cargo test --workspace --locked --features "$MULTIVAC_TEST_FEATURES" --test faults
