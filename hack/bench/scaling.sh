#!/usr/bin/env bash
# Benchmark of the operator's worker autoscaler (issue 5), on the local control
# plane with a real redis-server: the reaction time from a backlog burst
# (1,000 entries) to the worker Deployment's patched spec.replicas, several
# samples, min/median/max, with pollIntervalSeconds=5 (the default; target
# <= 6 s). One scaler cycle across 100 and 1,000 MultiVacs is measured by
# hack/bench/operator.sh.
# Uses the cluster of $KUBECONFIG when it answers, else starts one with
# `hack/cluster.sh up` in a temporary state dir and stops it afterwards.
#   SAMPLES=5 PROFILE=release|dev bash hack/bench/scaling.sh
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$MULTIVAC_ROOT"

SAMPLES="${SAMPLES:-5}"
PROFILE="${PROFILE:-release}"
POLL=5
PASSWORD="bench-$(date +%s)-$$"
WORK="$(mktemp -d /tmp/multivac-bench-scaling.XXXXXX)"
PIDS=()
CLUSTER_STARTED=""

cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  if [ -n "${KUBECONFIG:-}" ] && [ -n "${NS:-}" ]; then
    kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1
  fi
  [ -n "$CLUSTER_STARTED" ] && bash hack/cluster.sh down >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

REDIS_SERVER="$(bash hack/deps/redis.sh)"
command -v redis-cli >/dev/null || die "redis-cli missing: run \`bash hack/deps/redis.sh\`"

log "building the operator ($PROFILE profile)"
if [ "$PROFILE" = release ]; then
  cargo build -q --release -p multivac-operator --bins
  BIN_DIR="${CARGO_TARGET_DIR:-target}/release"
else
  cargo build -q -p multivac-operator --bins
  BIN_DIR="${CARGO_TARGET_DIR:-target}/debug"
fi
OPERATOR="$BIN_DIR/multivac-operator"

if [ -z "${KUBECONFIG:-}" ] || ! kubectl get --raw /readyz >/dev/null 2>&1; then
  log "starting a local control plane"
  export MULTIVAC_CLUSTER_STATE="$WORK/cluster"
  bash hack/cluster.sh build
  CLUSTER_STARTED=1
  bash hack/cluster.sh up
  eval "$(bash hack/cluster.sh env)"
fi

# start_redis NAME: a password-protected redis-server on a free port; sets
# <NAME>_PORT.
start_redis() {
  local port; port="$(free_port)"
  "$REDIS_SERVER" --bind 127.0.0.1 --port "$port" --requirepass "$PASSWORD" \
    --save "" --appendonly no --dir "$WORK" >/dev/null 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do rcli "$port" PING >/dev/null 2>&1 && break; sleep 0.05; done
  printf -v "$1_PORT" '%s' "$port"
}
rcli() { local p="$1"; shift; REDISCLI_AUTH="$PASSWORD" redis-cli -p "$p" "$@"; }

start_redis REACT

NS="bench-scaling-$$"
kubectl apply --server-side --force-conflicts --field-manager=bench -f crds/multivacs.multivac.io.yaml >/dev/null
# Not `kubectl wait`: it fails at once while the new CRD's conditions are still null.
established() {
  [ "$(kubectl get crd multivacs.multivac.io -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' 2>/dev/null)" = True ]
}
for _ in $(seq 60); do established && break; sleep 1; done
established || die "the MultiVac CRD is not Established after 60 s"
kubectl create namespace "$NS" >/dev/null
kubectl -n "$NS" create secret generic redis-react --from-literal=redis-url="redis://:$PASSWORD@127.0.0.1:$REACT_PORT/0" >/dev/null
kubectl -n "$NS" create secret generic mongo --from-literal=mongodb-uri="mongodb://u:p@127.0.0.1:9/" >/dev/null

# multivac NAME SECRET STABILIZATION
multivac() {
  cat <<EOF
apiVersion: multivac.io/v1alpha1
kind: MultiVac
metadata: {name: $1, namespace: $NS}
spec:
  image: multivac:bench
  networkPolicy: {enabled: false}
  workers: {minReplicas: 1, maxReplicas: 10, targetBacklogPerWorker: 100, pollIntervalSeconds: $POLL, scaleDownStabilizationSeconds: $3}
  redis: {external: {secretRef: {name: $2}}}
  mongodb: {external: {secretRef: {name: mongo}}}
---
EOF
}

METRICS_PORT="$(free_port)"
log "starting the operator"
RUST_LOG=warn "$OPERATOR" --leader-election=false --metrics-bind "127.0.0.1:$METRICS_PORT" \
  >"$WORK/operator.log" 2>&1 &
OPERATOR_PID=$!
PIDS+=("$OPERATOR_PID")

replicas() { kubectl -n "$NS" get deploy "$1" -o jsonpath='{.spec.replicas}' 2>/dev/null || true; }
wait_replicas() { # NAME WANT TIMEOUT_S
  local deadline=$(( $(date +%s) + $3 ))
  until [ "$(replicas "$1")" = "$2" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { tail -20 "$WORK/operator.log" >&2; die "$1 did not reach $2 replicas in $3 s"; }
    sleep 0.05
  done
}

# ---- 1. reaction time -------------------------------------------------------
multivac react redis-react 3 | kubectl apply -f - >/dev/null
wait_replicas react-worker 1 120
rcli "$REACT_PORT" XGROUP CREATE multivac:data multivac-workers 0 MKSTREAM >/dev/null
sleep $((POLL + 1))
BURST='for i=1,tonumber(ARGV[1]) do redis.call("XADD", KEYS[1], "*", "data", "x") end return 1'
SAMPLES_MS=()
log "reaction time: $SAMPLES bursts of 1,000 entries (pollIntervalSeconds=$POLL)"
for i in $(seq "$SAMPLES"); do
  # A random phase against the poll cycle, as a real burst would have.
  sleep "$(python3 -c "import random; print(round(random.uniform(0, $POLL), 2))")"
  t0=$(date +%s%N)
  rcli "$REACT_PORT" EVAL "$BURST" 1 multivac:data 1000 >/dev/null
  wait_replicas react-worker 10 60
  t1=$(date +%s%N)
  ms=$(( (t1 - t0) / 1000000 ))
  SAMPLES_MS+=("$ms")
  printf '  sample %d: %d ms\n' "$i" "$ms"
  rcli "$REACT_PORT" DEL multivac:data >/dev/null
  rcli "$REACT_PORT" XGROUP CREATE multivac:data multivac-workers 0 MKSTREAM >/dev/null
  wait_replicas react-worker 1 60
done
read -r MIN MED MAX < <(printf '%s\n' "${SAMPLES_MS[@]}" | sort -n | awk '{a[NR]=$1} END {print a[1], a[int((NR+1)/2)], a[NR]}')

cat <<EOF

== scaler benchmark (operator $PROFILE build, pollIntervalSeconds=$POLL) ==
reaction time, backlog burst -> worker Deployment spec.replicas patched ($SAMPLES samples):
  min $MIN ms, median $MED ms, max $MAX ms   (target <= $((POLL + 1)) s; KEDA+HPA defaults ~30-45 s)
EOF
