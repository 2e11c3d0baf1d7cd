#!/usr/bin/env bash
# Installs Debian's redis-server and redis-tools (redis-cli, redis-benchmark)
# when missing and prints the path of redis-server on stdout; logs go to stderr
# so the caller can capture the path: MULTIVAC_TEST_REDIS_SERVER="$(bash hack/deps/redis.sh)".
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-benchmark >/dev/null 2>&1; then
  apt_install redis-server redis-tools
fi
# Debian's package starts a system service on install; the tests and the demo
# start their own servers on free ports, so that one is not needed.
command -v redis-server >/dev/null 2>&1 || die "redis-server is still missing after apt-get install redis-server"
command -v redis-server
