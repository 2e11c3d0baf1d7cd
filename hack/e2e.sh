#!/usr/bin/env bash
# The end-to-end test (`make e2e`): MultiVAC really running on a real node.
#
#   1. release binaries, then images (hack/images/build.sh): the app and the
#      operator as Dockerfile.app/Dockerfile.operator lay them out, Redis from
#      Debian's redis-server, FerretDB behind the mongo image's contract;
#   2. the local control plane with a real node (hack/cluster.sh up --real-node)
#      and the images imported into its containerd;
#   3. the operator installed with its Helm chart, running as a pod;
#   4. a MultiVac using the local images, in a namespace that enforces the
#      `restricted` Pod Security Standard, until Ready (real probes);
#   5. through the server's ClusterIP Service: the seed flow, a 5,000-datum
#      burst (workers scale up, drain, scale back down, every datum counted
#      exactly once), a worker pod killed mid-processing (nothing lost), and
#      whether the NetworkPolicies are enforced.
#
# Needs root (containers, iptables). MULTIVAC_E2E_KEEP=1 leaves the cluster up
# afterwards (the script prints how to reach it and how to stop it).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
# shellcheck source=hack/cluster/version.sh
source "$MULTIVAC_ROOT/hack/cluster/version.sh"

BIN="$(cluster_bin_dir)"
export MULTIVAC_RELEASE_TARGET="${MULTIVAC_RELEASE_TARGET:-$MULTIVAC_CACHE/target-release}"
export MULTIVAC_IMAGE_TAG="${MULTIVAC_IMAGE_TAG:-local}"
NS=multivac-e2e
OP_NS=multivac-system
MV=e2e
BURST="${MULTIVAC_E2E_BURST:-5000}"
STABILIZE=30
KEEP="${MULTIVAC_E2E_KEEP:-0}"
T0=$(date +%s)
declare -A TIMES=()

if [ -z "${MULTIVAC_CLUSTER_STATE:-}" ]; then
  MULTIVAC_CLUSTER_STATE="$(mktemp -d "${TMPDIR:-/tmp}/multivac-e2e.XXXXXX")"
fi
export MULTIVAC_CLUSTER_STATE

step() { TIMES[$1]=$(( $(date +%s) - T0 )); log "[$(( $(date +%s) - T0 )) s] $1"; }
fail() {
  printf '\nE2E FAILED: %s\n' "$*" >&2
  diagnostics >&2 || true
  exit 1
}
k() { "$BIN/kubectl" --kubeconfig "$MULTIVAC_CLUSTER_STATE/kubeconfig" "$@"; }

diagnostics() {
  [ -f "$MULTIVAC_CLUSTER_STATE/kubeconfig" ] || return 0
  echo "--- pods"; k get pods -A -o wide 2>&1 | tail -n 30
  echo "--- multivac"; k -n "$NS" get mv "$MV" -o yaml 2>&1 | sed -n '/^status:/,$p'
  echo "--- events"; k -n "$NS" get events --sort-by=.lastTimestamp 2>&1 | tail -n 20
  echo "--- operator log"; k -n "$OP_NS" logs deploy/mvo-multivac-operator --tail 20 2>&1 || true
  echo "logs of the node and control plane: $MULTIVAC_CLUSTER_STATE/logs/"
}

cleanup() {
  local rc=$?
  # background helpers (the replica watcher, a poster) die with the test
  jobs -p | xargs -r kill 2>/dev/null || true
  if [ "$KEEP" = 1 ]; then
    log "left running (MULTIVAC_E2E_KEEP=1): export KUBECONFIG=$MULTIVAC_CLUSTER_STATE/kubeconfig; stop it with MULTIVAC_CLUSTER_STATE=$MULTIVAC_CLUSTER_STATE bash hack/cluster.sh down"
    if [ -n "${URL:-}" ]; then
      log "the MultiVac's Service answers on the host (kube-proxy routes its ClusterIP):"
      printf '  curl %s/multivac\n  curl -F data="entropy can be reversed" %s/multivac/data\n  curl %s/zzz/\n' "$URL" "$URL" "$URL"
    fi
  else
    bash "$MULTIVAC_ROOT/hack/cluster.sh" down >/dev/null 2>&1 || true
    rmdir "$MULTIVAC_CLUSTER_STATE" 2>/dev/null || true
  fi
  exit $rc
}

# ---- 1. binaries and images ----------------------------------------------------------

[ "$(id -u)" -eq 0 ] || die "the end-to-end test needs root: it runs a real node (containers, cgroups, iptables)"
# MULTIVAC_E2E_SKIP_CARGO=1 takes the binaries already in
# $MULTIVAC_RELEASE_TARGET/release as they are (iterating on the test itself).
if [ "${MULTIVAC_E2E_SKIP_CARGO:-}" != 1 ]; then
  log "building the release binaries (CARGO_TARGET_DIR=$MULTIVAC_RELEASE_TARGET)"
  (cd "$MULTIVAC_ROOT" && CARGO_TARGET_DIR="$MULTIVAC_RELEASE_TARGET" nice -n 19 \
    cargo build --release --locked -q -p multivac -p multivac-operator)
fi
step binaries
bash "$MULTIVAC_ROOT/hack/node/build.sh" >/dev/null
# Builds the app and operator images and checks them against their Dockerfiles.
bash "$MULTIVAC_ROOT/hack/images/test.sh" || fail "the images differ from Dockerfile.app / Dockerfile.operator"
bash "$MULTIVAC_ROOT/hack/images/build.sh" ensure redis ferretdb pause >/dev/null
step images

# ---- 2. cluster with a real node -------------------------------------------------------

trap cleanup EXIT
bash "$MULTIVAC_ROOT/hack/cluster.sh" up --real-node
bash "$MULTIVAC_ROOT/hack/images/build.sh" import "$MULTIVAC_CLUSTER_STATE/node" \
  multivac multivac-operator redis ferretdb >/dev/null
step "cluster and real node up"
node="$(k get nodes -l multivac.io/real-node=true -o jsonpath='{.items[0].metadata.name}')"
[ -n "$node" ] || fail "no real node registered"

# ---- 3. the operator from its chart --------------------------------------------------------

img() { bash "$MULTIVAC_ROOT/hack/images/build.sh" name "$1"; }
op_img="$(img multivac-operator)"
k create namespace "$OP_NS" >/dev/null
k label namespace "$OP_NS" pod-security.kubernetes.io/enforce=restricted >/dev/null
"$BIN/helm" --kubeconfig "$MULTIVAC_CLUSTER_STATE/kubeconfig" install mvo "$MULTIVAC_ROOT/charts/multivac-operator" \
  -n "$OP_NS" --set replicaCount=1 \
  --set image.repository="${op_img%:*}" --set image.tag="${op_img##*:}" --set image.pullPolicy=Never \
  --set logFormat=text --wait --timeout 180s >/dev/null \
  || fail "helm install of the operator did not become ready"
step "operator installed (helm)"

# ---- 4. a MultiVac on local images ---------------------------------------------------------

k create namespace "$NS" >/dev/null
k label namespace "$NS" pod-security.kubernetes.io/enforce=restricted >/dev/null
k -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: multivac.io/v1alpha1
kind: MultiVac
metadata:
  name: $MV
spec:
  image: $(img multivac)
  imagePullPolicy: Never
  # /zzz/ on the Service's port too (by default it is only on the pods'
  # internal port 9090, with /metrics): the checks below read it there.
  server:
    publicZzz: true
  # minReplicas 0: one worker drains ~1,500 data/s here, faster than the
  # HTTP intake, so with a worker always up no backlog would ever build and
  # nothing would scale. From zero, the burst waits in the stream until the
  # scaler starts workers, which is also the scale-from-zero path.
  workers:
    minReplicas: 0
    maxReplicas: 4
    targetBacklogPerWorker: 250
    pollIntervalSeconds: 2
    scaleDownStabilizationSeconds: $STABILIZE
  redis:
    managed:
      image: $(img redis)
  mongodb:
    managed:
      image: $(img ferretdb)
  answer:
    requiredConcepts: 100
EOF
k -n "$NS" wait --for=condition=Ready "mv/$MV" --timeout=300s >/dev/null \
  || fail "MultiVac $MV did not become Ready"
step "MultiVac Ready"
k -n "$NS" get pods -o wide

ip="$(k -n "$NS" get svc "$MV-server" -o jsonpath='{.spec.clusterIP}')"
port="$(k -n "$NS" get svc "$MV-server" -o jsonpath='{.spec.ports[0].port}')"
URL="http://$ip:$port"
log "the server's Service: $URL"

zzz() { curl -sf --max-time 5 "$URL/zzz/"; }
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
workers_replicas() { k -n "$NS" get deploy "$MV-worker" -o jsonpath='{.spec.replicas}'; }

# post_many N PREFIX: posts N data "PREFIX<i> cosmos" in parallel, prints how
# many were accepted (202).
post_many() {
  local n="$1" prefix="$2" cfg; cfg="$(mktemp)"
  local i
  for i in $(seq 1 "$n"); do
    # `next` separates the transfers: without it curl joins every datum
    # into one body and sends that to each URL.
    [ "$i" -gt 1 ] && echo next
    printf 'url = "%s/multivac/data"\ndata-urlencode = "data=%s%d cosmos"\nwrite-out = "%%{http_code}\\n"\noutput = /dev/null\nsilent\n' "$URL" "$prefix" "$i"
  done > "$cfg"
  curl -Z --parallel-max 16 -K "$cfg" 2>/dev/null | grep -c '^202$' || true
  rm -f "$cfg"
}

# wait_drained TOTAL TIMEOUT: until every accepted datum is processed.
wait_drained() {
  local total="$1" until=$(( $(date +%s) + $2 )) z
  while :; do
    z="$(zzz || true)"
    if [ -n "$z" ] && [ "$(echo "$z" | field data_processed)" -ge "$total" ] && [ "$(echo "$z" | field backlog)" -eq 0 ]; then
      echo "$z"; return 0
    fi
    [ "$(date +%s)" -lt "$until" ] || { echo "$z"; return 1; }
    sleep 2
  done
}

# ---- 5a. the seed flow ----------------------------------------------------------------------

answer="$(curl -sf "$URL/multivac")" || fail "GET $URL/multivac failed"
code="$(curl -s -o /dev/null -w '%{http_code}' "$URL/metrics")"
[ "$code" = 404 ] || fail "GET $URL/metrics through the Service answered $code: /metrics must stay on the internal port"
[[ "$answer" == *"INSUFFICIENT DATA"* ]] || fail "a fresh MultiVAC answered '$answer', not INSUFFICIENT DATA"
accepted=0
for i in $(seq 1 120); do
  code="$(curl -s -o /dev/null -w '%{http_code}' -F data="concept$i of the cosmos" "$URL/multivac/data")"
  [ "$code" = 202 ] || fail "POST datum $i answered $code"
  accepted=$((accepted + 1))
done
until_t=$(( $(date +%s) + 120 ))
until curl -sf "$URL/multivac" | grep -q 'LET THERE BE LIGHT!'; do
  [ "$(date +%s)" -lt "$until_t" ] || fail "no meaningful answer 120 s after $accepted data: $(curl -s "$URL/multivac")"
  sleep 1
done
step "seed flow: INSUFFICIENT DATA -> LET THERE BE LIGHT!"

# ---- 5b. a burst: scale up, drain, scale down, exactly once ---------------------------------

ready_workers() { k -n "$NS" get deploy "$MV-worker" -o jsonpath='{.status.readyReplicas}'; }
min="$(k -n "$NS" get mv "$MV" -o jsonpath='{.spec.workers.minReplicas}')"
until_t=$(( $(date +%s) + STABILIZE + 120 ))
until [ "$(workers_replicas)" -eq "$min" ]; do
  [ "$(date +%s)" -lt "$until_t" ] || fail "the workers did not settle at minReplicas=$min after the seed flow (now $(workers_replicas))"
  sleep 2
done
log "posting $BURST data (workers: $(workers_replicas))"
rm -f "$MULTIVAC_CLUSTER_STATE/e2e-max-workers"
( max=0; while :; do r="$(ready_workers 2>/dev/null || true)"; r="${r:-0}"
    if [ "$r" -gt "$max" ]; then max="$r"; echo "$max" > "$MULTIVAC_CLUSTER_STATE/e2e-max-workers"; fi
    sleep 1; done ) >/dev/null 2>&1 &
watcher=$!
burst_start=$(date +%s)
ok="$(post_many "$BURST" burst)"
[ "$ok" -eq "$BURST" ] || fail "only $ok of $BURST data were accepted"
accepted=$((accepted + BURST))
log "accepted $BURST data in $(( $(date +%s) - burst_start )) s; waiting for the backlog to drain"
z="$(wait_drained "$accepted" 600)" || fail "the backlog did not drain in 600 s: $z"
drain_s=$(( $(date +%s) - burst_start ))
kill "$watcher" 2>/dev/null || true
max_workers="$(cat "$MULTIVAC_CLUSTER_STATE/e2e-max-workers" 2>/dev/null || echo 0)"
[ "$max_workers" -gt "$min" ] || fail "no worker pod became ready during the burst (minReplicas $min)"
[ "$max_workers" -gt 1 ] || fail "the scaler started only $max_workers worker for a backlog of $BURST (target 250 per worker, max 4)"
processed="$(echo "$z" | field data_processed)"; concepts="$(echo "$z" | field concepts)"
# concepts: concept1..120, of, the, cosmos, burst1..N
want_concepts=$((120 + 3 + BURST))
[ "$processed" -eq "$accepted" ] || fail "data_processed=$processed, accepted=$accepted: not exactly once"
[ "$concepts" -eq "$want_concepts" ] || fail "concepts=$concepts, expected $want_concepts"
[ "$(echo "$z" | field dead_letters)" -eq 0 ] || fail "dead letters after the burst: $z"
step "burst of $BURST: $max_workers worker pods ready at most, drained in $drain_s s, data_processed=$processed (= accepted), concepts=$concepts (= distinct words sent)"
down_start=$(date +%s)
until_t=$(( $(date +%s) + STABILIZE + 120 ))
until [ "$(workers_replicas)" -eq "$min" ]; do
  [ "$(date +%s)" -lt "$until_t" ] || fail "the workers did not scale back to $min (now $(workers_replicas))"
  sleep 2
done
step "workers scaled back down to $min, $(( $(date +%s) - down_start )) s after the drain (stabilization ${STABILIZE} s)"

# ---- 5c. a worker killed mid-processing -----------------------------------------------------

base="$(zzz | field data_processed)"
log "posting $BURST data and killing the worker pods while they process them"
( post_many "$BURST" kill > "$MULTIVAC_CLUSTER_STATE/e2e-kill-accepted" ) &
poster=$!
until_t=$(( $(date +%s) + 180 ))
while :; do
  z="$(zzz || true)"
  p="$(echo "$z" | field data_processed 2>/dev/null || echo "$base")"
  [ "$p" -gt "$base" ] && break
  [ "$(date +%s)" -lt "$until_t" ] || fail "no worker started processing the data within 180 s"
  sleep 0.2
done
mapfile -t victim_list < <(k -n "$NS" get pods -l app.kubernetes.io/component=worker -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
victims="${victim_list[*]}"
[ -n "$victims" ] || fail "no worker pod to kill although data are being processed"
k -n "$NS" delete pod "${victim_list[@]}" --grace-period=0 --force >/dev/null 2>&1
pending="$(echo "$z" | field pending)"
done_at_kill=$((p - base))
log "killed worker pod(s) $victims after $done_at_kill of $BURST were processed (pending then: $pending)"
[ "$done_at_kill" -lt "$BURST" ] || fail "the workers finished before they could be killed: nothing was in flight"
wait "$poster"
ok="$(cat "$MULTIVAC_CLUSTER_STATE/e2e-kill-accepted")"
[ "$ok" -eq "$BURST" ] || fail "only $ok of $BURST data were accepted"
accepted=$((accepted + BURST))
z="$(wait_drained "$accepted" 600)" || fail "the backlog did not drain after the kill: $z"
processed="$(echo "$z" | field data_processed)"
[ "$processed" -eq "$accepted" ] || fail "after killing $victims: data_processed=$processed, accepted=$accepted"
[ "$(echo "$z" | field dead_letters)" -eq 0 ] || fail "dead letters after the kill: $z"
step "worker pod(s) killed mid-processing ($done_at_kill/$BURST done, $pending pending): data_processed=$processed (= accepted), nothing lost"

# ---- 5d. NetworkPolicy -------------------------------------------------------------------------

# probe NAME LABELS: a restricted pod (the FerretDB image has busybox nc)
# that tries Redis's Service; prints reachable or blocked.
probe() {
  local name="$1" labels="$2" img_f; img_f="$(img ferretdb)"
  k -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $name, labels: $labels}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  securityContext: {runAsNonRoot: true, runAsUser: 65534, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: probe
    image: $img_f
    imagePullPolicy: Never
    command: [sh, -c, "if nc -w 3 $MV-redis.$NS.svc 6379 </dev/null; then echo reachable; else echo blocked; fi"]
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}, readOnlyRootFilesystem: true}
EOF
  k -n "$NS" wait --for=jsonpath='{.status.phase}'=Succeeded "pod/$name" --timeout=60s >/dev/null || true
  k -n "$NS" logs "$name" 2>/dev/null | tail -1
}
k -n "$NS" get networkpolicy "$MV-redis" "$MV-mongodb" >/dev/null || fail "the NetworkPolicies are missing"
# The control: a pod with a worker's labels, which the policy admits, must get
# through, or the probe itself is broken and proves nothing.
allowed="$(probe np-allowed "{app.kubernetes.io/name: multivac, app.kubernetes.io/instance: $MV, app.kubernetes.io/component: worker}")"
[ "$allowed" = reachable ] || fail "the NetworkPolicy probe is broken: a pod the policy admits printed '$allowed'"
foreign="$(probe np-foreign "{app: np-foreign}")"
case "$foreign" in
  blocked) step "NetworkPolicy enforced: a pod outside the MultiVac cannot reach Redis, one with a worker's labels can" ;;
  reachable) step "NetworkPolicy NOT enforced: the bridge CNI ignores NetworkPolicies; a foreign pod reached Redis (the policies $MV-redis and $MV-mongodb exist)" ;;
  *) fail "the NetworkPolicy probe pod printed '$foreign'" ;;
esac

echo
log "END-TO-END PASSED in $(( $(date +%s) - T0 )) s"
for s in "${!TIMES[@]}"; do printf '  %5s s  %s\n' "${TIMES[$s]}" "$s"; done | sort -n
