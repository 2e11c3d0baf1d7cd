#!/usr/bin/env bash
# Benchmark of the operator's worker autoscaler (issue 5), on the local control
# plane with real redis-servers. Prints:
#   1. reaction time from a backlog burst (1,000 entries) to the worker
#      Deployment's patched spec.replicas: several samples, min/median/max,
#      with pollIntervalSeconds=5 (the default; target <= 6 s);
#   2. one polling cycle across 100 MultiVacs: Redis commands (INFO
#      commandstats delta) per cycle, poll latency (the operator's
#      multivac_scaler_poll_duration_seconds), operator CPU per cycle, and the
#      scaler's API writes while nothing changes (target 0).
# Uses the cluster of $KUBECONFIG when it answers, else starts one with
# `hack/cluster.sh up` in a temporary state dir and stops it afterwards.
#   SAMPLES=5 MULTIVACS=100 CYCLES=3 PROFILE=release|dev bash hack/bench/scaling.sh
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$MULTIVAC_ROOT"

SAMPLES="${SAMPLES:-5}"
MULTIVACS="${MULTIVACS:-100}"
CYCLES="${CYCLES:-3}"
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
start_redis FLEET

NS="bench-scaling-$$"
kubectl apply --server-side --force-conflicts --field-manager=bench -f crds/multivacs.multivac.io.yaml >/dev/null
kubectl wait --for=condition=Established crd/multivacs.multivac.io --timeout=60s >/dev/null
kubectl create namespace "$NS" >/dev/null
kubectl -n "$NS" create secret generic redis-react --from-literal=redis-url="redis://:$PASSWORD@127.0.0.1:$REACT_PORT/0" >/dev/null
kubectl -n "$NS" create secret generic redis-fleet --from-literal=redis-url="redis://:$PASSWORD@127.0.0.1:$FLEET_PORT/0" >/dev/null
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

# ---- 2. one polling cycle across $MULTIVACS MultiVacs --------------------------
log "creating $MULTIVACS MultiVacs on one Redis"
rcli "$FLEET_PORT" XGROUP CREATE multivac:data multivac-workers 0 MKSTREAM >/dev/null
rcli "$FLEET_PORT" EVAL "$BURST" 1 multivac:data 50 >/dev/null
for i in $(seq -w 1 "$MULTIVACS"); do multivac "fleet-$i" redis-fleet 60; done | kubectl apply -f - >/dev/null
deadline=$(( $(date +%s) + 300 ))
until [ "$(kubectl -n "$NS" get mv -o jsonpath='{range .items[*]}{.status.workers.backlog}{"\n"}{end}' | grep -c '^50$')" -ge "$MULTIVACS" ]; do
  [ "$(date +%s)" -lt "$deadline" ] || die "the $MULTIVACS MultiVacs did not all report their backlog in 300 s"
  sleep 1
done
sleep $((POLL * 2))   # let status writes and events settle

metric() { # NAME [LABEL-FILTER]: sum of a metric's samples
  curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" | awk -v n="$1" -v f="${2:-}" \
    '$1 ~ "^"n"({|$)" && index($1, f) {s += $2} END {printf "%.6f\n", s+0}'
}
cmdstats() { rcli "$FLEET_PORT" INFO commandstats | tr -d '\r' | awk -F'[=,:]' '/^cmdstat_/ && $1 != "cmdstat_info" {s += $3} END {print s+0}'; }
cputicks() { awk '{print $14 + $15}' "/proc/$OPERATOR_PID/stat"; }

buckets() { curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" | grep '^multivac_scaler_poll_duration_seconds_bucket' || true; }
buckets > "$WORK/b0"
c0=$(cmdstats); n0=$(metric multivac_scaler_poll_duration_seconds_count); s0=$(metric multivac_scaler_poll_duration_seconds_sum)
w0=$(metric multivac_operator_api_writes_total 'scaler:'); cpu0=$(cputicks)
sleep $((POLL * CYCLES))
c1=$(cmdstats); n1=$(metric multivac_scaler_poll_duration_seconds_count); s1=$(metric multivac_scaler_poll_duration_seconds_sum)
w1=$(metric multivac_operator_api_writes_total 'scaler:'); cpu1=$(cputicks)
buckets > "$WORK/b1"
HZ=$(getconf CLK_TCK)
RSS_KB=$(awk '/VmRSS/ {print $2}' "/proc/$OPERATOR_PID/status")

python3 - "$c0" "$c1" "$n0" "$n1" "$s0" "$s1" "$w0" "$w1" "$cpu0" "$cpu1" "$HZ" "$CYCLES" "$MULTIVACS" <<'EOF' > "$WORK/cycle.txt"
import sys
c0,c1,n0,n1,s0,s1,w0,w1,cpu0,cpu1,hz,cycles,mvs = map(float, sys.argv[1:])
polls = n1 - n0
cmds = c1 - c0
# redis-cli's own INFO call is excluded; each poll is one XINFO GROUPS.
print(f"  polls observed:          {polls:.0f} in {cycles:.0f} cycles ({polls/cycles:.0f} per cycle, {mvs:.0f} MultiVacs)")
print(f"  Redis commands:          {cmds/cycles:.0f} per cycle ({cmds/max(polls,1):.2f} per MultiVac poll)")
print(f"  mean poll latency:       {1000*(s1-s0)/max(polls,1):.2f} ms (read + decide + compare; polls run concurrently)")
print(f"  operator CPU per cycle:  {1000*(cpu1-cpu0)/hz/cycles:.0f} ms")
print(f"  scaler API writes idle:  {w1-w0:.0f} in {cycles:.0f} cycles")
EOF

# Slowest single poll during the measured cycles, from the histogram's bucket
# deltas: the cycle's wall time, since the polls run concurrently.
P_MAX=$(python3 - "$WORK/b0" "$WORK/b1" <<'EOF'
import re, sys
def read(path):
    out = {}
    for line in open(path):
        m = re.search(r'le="([^"]+)"\}? (\S+)$', line.strip())
        if m:
            out[m.group(1)] = float(m.group(2))
    return out
b0, b1 = read(sys.argv[1]), read(sys.argv[2])
delta = {le: b1[le] - b0.get(le, 0) for le in b1}
total = delta.get("+Inf", 0)
les = sorted((float(le), le) for le in delta if le != "+Inf")
print(next((le for v, le in les if delta[le] >= total), "+Inf"))
EOF
)

cat <<EOF

== scaler benchmark (operator $PROFILE build, pollIntervalSeconds=$POLL) ==
reaction time, backlog burst -> worker Deployment spec.replicas patched ($SAMPLES samples):
  min $MIN ms, median $MED ms, max $MAX ms   (target <= $((POLL + 1)) s; KEDA+HPA defaults ~30-45 s)
one polling cycle across $MULTIVACS MultiVacs (steady backlog, nothing to change):
$(cat "$WORK/cycle.txt")
  slowest poll (= cycle wall time, polls are concurrent): <= ${P_MAX} s (histogram bucket)
  operator RSS:            $((RSS_KB / 1024)) MiB with $((MULTIVACS + 1)) MultiVacs
EOF
