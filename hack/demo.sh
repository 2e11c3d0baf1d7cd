#!/usr/bin/env bash
# `make demo`: MultiVAC on this machine. Installs or builds what is missing,
# then runs Redis, FerretDB (the MongoDB-compatible server), one server and
# two workers in the foreground, prints the curl lines to try, and stops
# everything on Ctrl-C. State lives in a temporary directory, removed on exit.
# Knobs: MULTIVAC_DEMO_PORT (default 8080, or a free port when 8080 is taken),
#        MULTIVAC_REQUIRED_CONCEPTS (default 100), RUST_LOG (default info).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$MULTIVAC_ROOT"

redis_server="$(bash hack/deps/redis.sh)"
ferretdb="$(bash hack/deps/ferretdb.sh)"
log "building multivac"
cargo build --locked -p multivac --quiet
multivac="${CARGO_TARGET_DIR:-$MULTIVAC_ROOT/target}/debug/multivac"

port_free() {
  python3 -c 'import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", int(sys.argv[1])))' "$1" 2>/dev/null
}
http_port="${MULTIVAC_DEMO_PORT:-8080}"
port_free "$http_port" || { log "port $http_port is taken, using a free one"; http_port="$(free_port)"; }
# The server's internal port (/zzz, /metrics): 9090 as in a pod, unless taken.
internal_port=9090
port_free "$internal_port" || { log "port $internal_port is taken, using a free one"; internal_port="$(free_port)"; }
redis_port="$(free_port)"
mongo_port="$(free_port)"
metrics1="$(free_port)"
metrics2="$(free_port)"

state="$(mktemp -d /tmp/multivac-demo.XXXXXX)"
pids=()
stop() {
  trap - INT TERM EXIT
  log "stopping"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$state"
}
trap stop EXIT
trap 'exit 0' INT TERM

wait_port() {
  for _ in $(seq 1 150); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  die "$2 did not start on port $1"
}

log "redis-server on 127.0.0.1:$redis_port"
"$redis_server" --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly yes --dir "$state" \
  --loglevel warning &
pids+=($!)
wait_port "$redis_port" redis-server

log "FerretDB on 127.0.0.1:$mongo_port"
mkdir -p "$state/ferretdb"
"$ferretdb" --handler=sqlite --sqlite-url="file:$state/ferretdb/" --state-dir="$state/ferretdb" \
  --listen-addr="127.0.0.1:$mongo_port" --debug-addr=127.0.0.1:0 --telemetry=disable --log-level=error &
pids+=($!)
wait_port "$mongo_port" FerretDB

export MULTIVAC_REDIS_URL="redis://127.0.0.1:$redis_port"
export MULTIVAC_MONGODB_URI="mongodb://127.0.0.1:$mongo_port"
export RUST_LOG="${RUST_LOG:-info}"

log "multivac server on 0.0.0.0:$http_port (API), 127.0.0.1:$internal_port (/zzz, /metrics)"
MULTIVAC_BIND="0.0.0.0:$http_port" MULTIVAC_METRICS_BIND="127.0.0.1:$internal_port" "$multivac" server &
pids+=($!)
log "two multivac workers (metrics on :$metrics1 and :$metrics2)"
MULTIVAC_METRICS_BIND="127.0.0.1:$metrics1" MULTIVAC_CONSUMER_NAME=worker-1 "$multivac" worker &
pids+=($!)
MULTIVAC_METRICS_BIND="127.0.0.1:$metrics2" MULTIVAC_CONSUMER_NAME=worker-2 "$multivac" worker &
pids+=($!)
wait_port "$http_port" "multivac server"
wait_port "$internal_port" "multivac server (internal port)"
wait_port "$metrics1" "worker-1"
wait_port "$metrics2" "worker-2"

url="http://127.0.0.1:$http_port"
internal="http://127.0.0.1:$internal_port"
cat <<EOT

MultiVAC is running at $url (Ctrl-C stops everything). Try:

  curl $url/
  curl $url/multivac                      # INSUFFICIENT DATA FOR MEANINGFUL ANSWER.
  curl -F data="Entropy can be reversed by the stars" $url/multivac/data
  curl -d data="Let there be light" $url/multivac/data
  curl -H 'Content-Type: application/json' -d '{"data": "Order from chaos"}' $url/multivac/data
  curl -H 'Accept: application/json' $url/multivac
  curl $internal/zzz/                     # the state: on the internal port
  # feed it until it knows ${MULTIVAC_REQUIRED_CONCEPTS:-100} concepts:
  for i in \$(seq 1 100); do curl -s -d "data=concept\$i of the universe" $url/multivac/data >/dev/null; done
  curl $url/multivac                      # LET THERE BE LIGHT!
  curl $internal/metrics ; curl http://127.0.0.1:$metrics1/metrics

EOT
# Foreground until Ctrl-C or until any process dies.
wait -n "${pids[@]}" || true
log "a process exited; stopping the demo"
