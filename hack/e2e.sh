#!/usr/bin/env bash
# The end-to-end test (`make e2e`): MultiVAC really running on a real node.
#
# Set-up (any failure here fails every scenario):
#   1. the debug binaries `make test` builds (the same `cargo test --no-run`,
#      a no-op right after it), the node's binaries (hack/node/build.sh), and
#      images from them (hack/images/build.sh; the app and operator images are
#      checked against their Dockerfiles by hack/images/test.sh);
#   2. the local control plane with a real node (hack/cluster.sh up
#      --real-node: containerd, kubelet, kube-proxy, kube-router's
#      NetworkPolicy controller, CoreDNS) and the images imported into it;
#   3. the operator installed with its Helm chart, running as a pod;
#   4. a MultiVac using the local images, in a namespace that enforces the
#      `restricted` Pod Security Standard, until Ready (real probes).
# Then the scenarios, each through the server's ClusterIP Service, each a
# line of the summary table with the figures it measured:
#   seed flow; a burst scaling the workers 0 -> N -> 0, counted exactly once;
#   worker pods killed mid-processing; scale to zero and wake on one datum;
#   NetworkPolicy enforced; a rolling update of the server under steady POST
#   load; the MongoDB pod deleted under load; the Redis pod deleted under
#   load; the credentials rotated under load; the MultiVac deleted once
#   enlightened and created again; and last,
#   `hack/cluster.sh down` leaving nothing behind (timed).
# The last line is `e2e: N passed, M failed`; the exit status is non-zero on
# any failure.
#
# Needs root (containers, iptables). MULTIVAC_E2E_KEEP=1 leaves the cluster up
# afterwards (the script prints how to reach it and how to stop it).
set -euo pipefail
# errexit in command substitutions too: `x="$(step)"` fails when step does.
shopt -s inherit_errexit
source "$(dirname "$0")/lib.sh"
# shellcheck source=hack/cluster/version.sh
source "$MULTIVAC_ROOT/hack/cluster/version.sh"

[ "$(id -u)" -eq 0 ] || die "the end-to-end test needs root: it runs a real node (containers, cgroups, iptables)"
BIN="$(cluster_bin_dir)"
# The images carry the debug binaries `make test` built in this target folder.
CARGO_TARGET="${CARGO_TARGET_DIR:-$MULTIVAC_ROOT/target}"
export MULTIVAC_IMAGE_BINARIES="${MULTIVAC_IMAGE_BINARIES:-$CARGO_TARGET/debug}"
export MULTIVAC_IMAGE_TAG="${MULTIVAC_IMAGE_TAG:-local}"
NS=multivac-e2e
OP_NS=multivac-system
MV=e2e
BURST="${MULTIVAC_E2E_BURST:-5000}"
# Steady load of the fault scenarios, requests per second.
RATE="${MULTIVAC_E2E_RATE:-40}"
STABILIZE=30
# Seconds a deleted Redis or MongoDB pod is kept from coming back.
OUTAGE="${MULTIVAC_E2E_OUTAGE:-20}"
KEEP="${MULTIVAC_E2E_KEEP:-0}"
T0=$(date +%s)

if [ -z "${MULTIVAC_CLUSTER_STATE:-}" ]; then
  MULTIVAC_CLUSTER_STATE="$(mktemp -d "${TMPDIR:-/tmp}/multivac-e2e.XXXXXX")"
fi
export MULTIVAC_CLUSTER_STATE
# Per-run scratch (figures, load results); outside the cluster state, which
# `down` removes.
RUN="$(mktemp -d "${TMPDIR:-/tmp}/multivac-e2e-run.XXXXXX")"

k() { "$BIN/kubectl" --kubeconfig "$MULTIVAC_CLUSTER_STATE/kubeconfig" "$@"; }
img() { bash "$MULTIVAC_ROOT/hack/images/build.sh" name "$1"; }
since() { echo $(( $(date +%s) - $1 )); }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# secs_since_ms START_MS: the time since START_MS (from now_ms) in seconds, x.y.
secs_since_ms() { local d=$(( $(now_ms) - $1 )); printf '%d.%d' $((d / 1000)) $((d % 1000 / 100)); }

# ---- scenarios and the summary ----------------------------------------------------------
# Passing and failing are counted by the check scripts' shared helper (check,
# check_summary in hack/lib.sh); the table adds each scenario's figures.

SUMMARY=()

# scenario TITLE FUNCTION: runs FUNCTION in a subshell with errexit, as a
# check (its output is shown when it fails). It records what it measured with
# `figures`, and ends a failed assertion with `fail REASON`. Background jobs
# it started (load generators) end with it.
scenario() {
  local title="$1" fn="$2" t0 failed_before=$CHECK_FAILED rc=0
  t0=$(date +%s)
  : > "$RUN/figures"; : > "$RUN/why"
  log "[$(since "$T0") s] scenario: $title"
  check "$title" scenario_body "$fn"
  [ "$CHECK_FAILED" -eq "$failed_before" ] || rc=1
  [ -s "$RUN/why" ] || [ $rc -eq 0 ] || echo "a command failed (see its output above)" > "$RUN/why"
  table_line "$title" "$rc" "$(since "$t0")" "$(cat "$RUN/figures")" "$(cat "$RUN/why")"
}
# check runs this with errexit off; errexit is on in the subshell, which is
# no condition (`( ... ) || x` would turn errexit off inside it).
scenario_body() {
  local rc
  ( set -e; trap 'jobs -p | xargs -r kill 2>/dev/null || true' EXIT; "$1" )
  rc=$?
  [ $rc -eq 0 ] || diagnostics
  return $rc
}

# not_run TITLE WHY: a scenario that could not run counts as failed.
not_run() {
  check "$1" false
  table_line "$1" 1 0 "" "$2"
}

# table_line TITLE RC SECONDS FIGURES WHY: one line of the summary.
table_line() {
  local line="$3 s | ${4%; }"
  [ -n "$5" ] && line+=" | FAILED: $5"
  if [ "$2" -eq 0 ]; then SUMMARY+=("PASS | $1 | $line"); else SUMMARY+=("FAIL | $1 | $line"); fi
}

# figures TEXT: a measured figure of the running scenario.
figures() { printf '%s; ' "$*" >> "$RUN/figures"; printf '    %s\n' "$*" >&2; }
# fail REASON: the running scenario's assertion failed.
fail() { printf '%s' "$*" > "$RUN/why"; printf '    FAILED: %s\n' "$*" >&2; exit 1; }

# summary: the table, then `e2e: N passed, M failed`; fails on any failure.
summary() {
  echo
  echo "e2e summary ($(since "$T0") s in all):"
  local i=0 s
  for s in "${SUMMARY[@]}"; do i=$((i + 1)); printf '%2d | %s\n' "$i" "$s"; done
  check_summary e2e
}

diagnostics() {
  [ -f "$MULTIVAC_CLUSTER_STATE/kubeconfig" ] || return 0
  echo "--- pods"; k get pods -A -o wide 2>&1 | tail -n 25
  echo "--- multivac"; k -n "$NS" get mv "$MV" -o yaml 2>&1 | sed -n '/^status:/,$p' | head -n 30
  echo "--- events"; k -n "$NS" get events --sort-by=.lastTimestamp 2>&1 | tail -n 15
  echo "--- operator log"; k -n "$OP_NS" logs deploy/mvo-multivac-operator --tail 15 2>&1 || true
  echo "logs of the node and control plane: $MULTIVAC_CLUSTER_STATE/logs/"
}

# ---- helpers on the MultiVac --------------------------------------------------------------

mv_manifest() { # IMAGE
  cat <<EOF
apiVersion: multivac.io/v1alpha1
kind: MultiVac
metadata:
  name: $MV
spec:
  image: $1
  imagePullPolicy: Never
  # /zzz/ on the Service's port too (by default it is only on the pods'
  # internal port 9090, with /metrics): the checks below read it there.
  server:
    publicZzz: true
  # minReplicas 0: one worker drains faster than the HTTP intake here, so with
  # a worker always up no backlog would ever build and nothing would scale.
  # From zero, a burst waits in the stream until the scaler starts workers,
  # which is also the scale-from-zero path.
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
}

service_url() {
  local ip port
  ip="$(k -n "$NS" get svc "$MV-server" -o jsonpath='{.spec.clusterIP}')"
  port="$(k -n "$NS" get svc "$MV-server" -o jsonpath='{.spec.ports[0].port}')"
  [ -n "$ip" ] && [ -n "$port" ] && echo "http://$ip:$port"
}

zzz() { curl -sf --max-time 5 "$URL/zzz/"; }
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
# processed: data_processed, asking /zzz/ for up to 30 s (a store may be
# coming back from the previous scenario).
processed() {
  local i z
  for i in $(seq 1 30); do
    z="$(zzz || true)"
    if [ -n "$z" ]; then echo "$z" | field data_processed; return 0; fi
    sleep 1
  done
  fail "GET /zzz/ did not answer for 30 s"
}
workers_replicas() { k -n "$NS" get deploy "$MV-worker" -o jsonpath='{.spec.replicas}'; }
ready_workers() { k -n "$NS" get deploy "$MV-worker" -o jsonpath='{.status.readyReplicas}'; }
component_pods() { k -n "$NS" get pods -l "app.kubernetes.io/instance=$MV,app.kubernetes.io/component=$1" -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}'; }

# post_many N PREFIX: posts N data "PREFIX<i> cosmos" in parallel, prints how
# many were accepted (202).
# answer_after_ready: GET /multivac right after the MultiVac became Ready.
# Ready says the pods run and MongoDB has the app user; a server whose first
# MongoDB connection failed (MongoDB was still starting) answers 503 with
# Retry-After until its next attempt succeeds, so this retries 503s, as a
# client is told to, for up to 30 s. Prints the last answer; the number of
# 503s goes to $RUN/answer-503s.
answer_after_ready() {
  local out code n=0 until_t=$(( $(date +%s) + 30 ))
  while :; do
    out="$(curl -s --max-time 15 -w '\n%{http_code}' "$URL/multivac")"
    code="${out##*$'\n'}"; out="${out%$'\n'*}"
    [ "$code" = 503 ] && [ "$(date +%s)" -lt "$until_t" ] || break
    n=$((n + 1)); sleep 0.5
  done
  echo "$n" > "$RUN/answer-503s"
  echo "$out"
  [ "$code" = 200 ]
}

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

# wait_drained TOTAL TIMEOUT: until TOTAL data are processed and nothing is
# queued; prints the last /zzz answer.
wait_drained() {
  local total="$1" until_t=$(( $(date +%s) + $2 )) z
  while :; do
    z="$(zzz || true)"
    if [ -n "$z" ] && [ "$(echo "$z" | field data_processed)" -ge "$total" ] && [ "$(echo "$z" | field backlog)" -eq 0 ]; then
      echo "$z"; return 0
    fi
    [ "$(date +%s)" -lt "$until_t" ] || { echo "${z:-no answer from /zzz/}"; return 1; }
    sleep 1
  done
}

# wait_workers N TIMEOUT: the worker Deployment settled at N replicas.
wait_workers() {
  local until_t=$(( $(date +%s) + $2 ))
  until [ "$(workers_replicas)" = "$1" ]; do
    [ "$(date +%s)" -lt "$until_t" ] || return 1
    sleep 1
  done
}

wait_mv_ready() { k -n "$NS" wait --for=condition=Ready "mv/$MV" --timeout="${1}s" >/dev/null 2>&1; }

# load_start NAME PREFIX: steady POST load (hack/e2e/load.py) at $RATE/s for
# at most 240 s, until load_stop NAME.
load_start() {
  rm -f "$RUN/stop-$1"
  python3 "$MULTIVAC_ROOT/hack/e2e/load.py" "$URL" "$2" --rate "$RATE" --seconds 240 \
    --stop-file "$RUN/stop-$1" --out "$RUN/load-$1.json" >/dev/null &
  echo $! > "$RUN/load-$1.pid"
}
# load_stop NAME: stops the load and prints its result (JSON). It may run in
# another subshell than load_start, so it polls rather than `wait`s.
load_stop() {
  local pid i; pid="$(cat "$RUN/load-$1.pid")"
  touch "$RUN/stop-$1"
  for i in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  [ -s "$RUN/load-$1.json" ] || fail "the load generator wrote no result"
  cat "$RUN/load-$1.json"
}
load_errors() { # JSON: "refused:ECONNREFUSED 8, refused:timeout 1"
  python3 -c 'import json,sys; print(", ".join("%s %d" % kv for kv in json.loads(sys.argv[1])["errors"].items()) or "no connection error")' "$1"
}
load_summary() { # JSON: "sent N at R/s: accepted A, refused B (ECONNREFUSED B)"
  python3 -c '
import json, sys
r = json.loads(sys.argv[1])
line = "sent %d at %.0f/s: %s" % (r["sent"], r["rate"], ", ".join("%s %d" % kv for kv in r["outcomes"].items()))
if r["errors"]:
    line += " (%s)" % ", ".join("%s %d" % kv for kv in r["errors"].items())
print(line)' "$1"
}

# drained_exactly BASE JSON SECS: after a load (JSON) that started when
# BASE data were processed, waits until every accepted datum is processed
# and checks that no more were processed than could have been queued
# (accepted + ambiguous), i.e. nothing lost and nothing invented.
drained_exactly() {
  local base="$1" json="$2" acc amb z p
  acc="$(echo "$json" | field accepted)"; amb="$(echo "$json" | field ambiguous)"
  z="$(wait_drained $((base + acc)) "$3")" \
    || fail "$acc data got a 202 but only $(( $(echo "$z" | field data_processed 2>/dev/null || echo "$base") - base )) were processed within $3 s: $z"
  p=$(( $(echo "$z" | field data_processed) - base ))
  [ "$p" -le $((acc + amb)) ] || fail "$p data processed, more than the $acc accepted plus $amb ambiguous requests"
  [ "$(echo "$z" | field dead_letters)" -eq 0 ] || fail "dead letters: $z"
  echo "$p"
}

# ---- scenarios -------------------------------------------------------------------------------

s_seed_flow() {
  local answer i code t
  answer="$(answer_after_ready)" || fail "GET $URL/multivac answered no 200 within 30 s of Ready: $answer"
  [[ "$answer" == *"INSUFFICIENT DATA"* ]] || fail "a fresh MultiVAC answered '$answer', not INSUFFICIENT DATA"
  code="$(curl -s -o /dev/null -w '%{http_code}' "$URL/metrics")"
  [ "$code" = 404 ] || fail "GET $URL/metrics through the Service answered $code: /metrics must stay on the internal port"
  t=$(now_ms)
  for i in $(seq 1 120); do
    code="$(curl -s -o /dev/null -w '%{http_code}' -F data="concept$i of the cosmos" "$URL/multivac/data")"
    [ "$code" = 202 ] || fail "POST datum $i answered $code"
  done
  local until_t=$(( $(date +%s) + 120 ))
  until curl -sf "$URL/multivac" | grep -q 'LET THERE BE LIGHT!'; do
    [ "$(date +%s)" -lt "$until_t" ] || fail "no meaningful answer 120 s after 120 data: $(curl -s "$URL/multivac")"
    sleep 0.5
  done
  figures "INSUFFICIENT DATA (after $(cat "$RUN/answer-503s") 503s right after Ready), then 120 data (123 concepts, 100 required): LET THERE BE LIGHT! $(secs_since_ms "$t") s after the first POST"
}

s_burst() {
  local min z0 z max_workers processed concepts ok start drain_s down_start
  min="$(k -n "$NS" get mv "$MV" -o jsonpath='{.spec.workers.minReplicas}')"
  wait_workers "$min" $((STABILIZE + 120)) || fail "the workers did not settle at minReplicas=$min (now $(workers_replicas))"
  z0="$(zzz)"
  rm -f "$RUN/max-workers" "$RUN/max-ready"
  # The scaler's decision (spec.replicas) and the pods that became ready: a
  # worker already running may drain the burst before new pods are ready.
  ( max=0; max_ready=0; while :; do
      r="$(workers_replicas 2>/dev/null || true)"; r="${r:-0}"
      if [ "$r" -gt "$max" ]; then max="$r"; echo "$max" > "$RUN/max-workers"; fi
      r="$(ready_workers 2>/dev/null || true)"; r="${r:-0}"
      if [ "$r" -gt "$max_ready" ]; then max_ready="$r"; echo "$max_ready" > "$RUN/max-ready"; fi
      sleep 0.5; done ) >/dev/null 2>&1 &
  start=$(date +%s)
  ok="$(post_many "$BURST" burst)"
  [ "$ok" -eq "$BURST" ] || fail "only $ok of $BURST data were accepted"
  figures "$BURST data accepted in $(since "$start") s"
  z="$(wait_drained $(( $(echo "$z0" | field data_processed) + BURST )) 600)" || fail "the backlog did not drain in 600 s: $z"
  drain_s="$(since "$start")"
  max_workers="$(cat "$RUN/max-workers" 2>/dev/null || echo 0)"
  [ "$max_workers" -gt "$min" ] || fail "the scaler did not scale the workers above minReplicas $min during the burst"
  [ "$max_workers" -gt 1 ] || fail "the scaler asked for only $max_workers worker for a backlog of $BURST (target 250 per worker, max 4)"
  processed=$(( $(echo "$z" | field data_processed) - $(echo "$z0" | field data_processed) ))
  concepts=$(( $(echo "$z" | field concepts) - $(echo "$z0" | field concepts) ))
  [ "$processed" -eq "$BURST" ] || fail "data_processed grew by $processed for $BURST accepted: not exactly once"
  # burst1..burstN are new words; `cosmos` is known already.
  [ "$concepts" -eq "$BURST" ] || fail "concepts grew by $concepts, expected $BURST (one new word per datum)"
  [ "$(echo "$z" | field dead_letters)" -eq 0 ] || fail "dead letters after the burst: $z"
  figures "workers $min -> $max_workers (scaler), $(cat "$RUN/max-ready" 2>/dev/null || echo 0) ready at most, drained in $drain_s s; processed +$processed (= accepted), concepts +$concepts (= new words)"
  down_start=$(date +%s)
  wait_workers "$min" $((STABILIZE + 120)) || fail "the workers did not scale back to $min (now $(workers_replicas))"
  figures "back to $min workers $(since "$down_start") s after the drain (window ${STABILIZE} s)"
}

# The workers drain a $BURST burst in a few seconds here, faster than /zzz/
# answers while the intake is flooded, so this one sends four times as much.
s_kill_workers() {
  local base p z victims pending done_at_kill ok n=$((BURST * 4))
  base="$(processed)"
  ( post_many "$n" kill > "$RUN/kill-accepted" ) &
  local poster=$! until_t=$(( $(date +%s) + 180 ))
  while :; do
    z="$(zzz || true)"
    p="$(echo "$z" | field data_processed 2>/dev/null || echo "$base")"
    [ "$p" -gt "$base" ] && break
    [ "$(date +%s)" -lt "$until_t" ] || fail "no worker started processing the data within 180 s"
    sleep 0.2
  done
  mapfile -t victims < <(component_pods worker)
  [ "${#victims[@]}" -gt 0 ] || fail "no worker pod to kill although data are being processed"
  k -n "$NS" delete pod "${victims[@]}" --grace-period=0 --force >/dev/null 2>&1
  pending="$(echo "$z" | field pending)"
  done_at_kill=$((p - base))
  [ "$done_at_kill" -lt "$n" ] || fail "the workers finished before they could be killed: nothing was in flight"
  wait "$poster"
  ok="$(cat "$RUN/kill-accepted")"
  [ "$ok" -eq "$n" ] || fail "only $ok of $n data were accepted"
  z="$(wait_drained $((base + n)) 600)" || fail "the backlog did not drain after the kill: $z"
  p=$(( $(echo "$z" | field data_processed) - base ))
  [ "$p" -eq "$n" ] || fail "after killing ${victims[*]}: processed +$p, accepted $n"
  [ "$(echo "$z" | field dead_letters)" -eq 0 ] || fail "dead letters after the kill: $z"
  figures "${#victims[@]} worker pod(s) SIGKILLed with $done_at_kill/$n processed, $pending pending; processed +$p (= accepted), 0 dead letters"
}

s_wake_from_zero() {
  local base t code scaled="" z p
  wait_workers 0 $((STABILIZE + 120)) || fail "the workers did not scale to 0 (now $(workers_replicas))"
  local until_t=$(( $(date +%s) + 60 ))
  while [ -n "$(component_pods worker)" ]; do
    [ "$(date +%s)" -lt "$until_t" ] || fail "worker pods still exist 60 s after scaling to 0"
    sleep 1
  done
  base="$(processed)"
  t=$(now_ms)
  code="$(curl -s -o /dev/null -w '%{http_code}' -F data="wakeup call" "$URL/multivac/data")"
  [ "$code" = 202 ] || fail "POST answered $code"
  until_t=$(( $(date +%s) + 180 ))
  while :; do
    if [ -z "$scaled" ] && [ "$(workers_replicas)" != 0 ]; then scaled="$(secs_since_ms "$t")"; fi
    z="$(zzz || true)"
    p="$(echo "$z" | field data_processed 2>/dev/null || echo "$base")"
    [ "$p" -gt "$base" ] && break
    [ "$(date +%s)" -lt "$until_t" ] || fail "the datum was not processed within 180 s (workers: $(workers_replicas))"
    sleep 0.2
  done
  figures "0 workers; one POST -> replicas 0 -> $(workers_replicas) after ${scaled:-?} s, datum processed $(secs_since_ms "$t") s after the POST"
}

# probe_start NAME LABELS: a restricted pod (the FerretDB image has busybox
# nc) that tries Redis's and MongoDB's Services, up to 10 times each about 3 s
# apart (a new pod's address may take kube-router a moment to admit), and
# prints "redis=reachable mongodb=blocked" and the like; probe_result NAME
# waits for it and prints that line.
probe_start() {
  local name="$1" labels="$2"
  k -n "$NS" delete pod "$name" --ignore-not-found --wait >/dev/null 2>&1
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
    image: $(img ferretdb)
    imagePullPolicy: Never
    command:
    - sh
    - -c
    - |
      for t in redis:6379 mongodb:27017; do
        r=blocked
        for i in 1 2 3 4 5 6 7 8 9 10; do
          if nc -w 2 $MV-\${t%:*}.$NS.svc \${t#*:} </dev/null; then r=reachable; break; fi
          sleep 1
        done
        printf '%s=%s ' "\${t%:*}" "\$r"
      done
      echo
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}, readOnlyRootFilesystem: true}
EOF
}
probe_result() {
  k -n "$NS" wait --for=jsonpath='{.status.phase}'=Succeeded "pod/$1" --timeout=120s >/dev/null || true
  k -n "$NS" logs "$1" 2>/dev/null | tail -1 | sed 's/ *$//'
}

s_network_policy() {
  local allowed_w allowed_s foreign base
  k -n "$NS" get networkpolicy "$MV-redis" "$MV-mongodb" >/dev/null || fail "the NetworkPolicies $MV-redis and $MV-mongodb are missing"
  # Controls: pods with the app's labels must get through, or the probe
  # proves nothing.
  probe_start np-worker "{app.kubernetes.io/name: multivac, app.kubernetes.io/instance: $MV, app.kubernetes.io/component: worker}"
  probe_start np-server "{app.kubernetes.io/name: multivac, app.kubernetes.io/instance: $MV, app.kubernetes.io/component: server}"
  probe_start np-foreign "{app: np-foreign}"
  allowed_w="$(probe_result np-worker)"; allowed_s="$(probe_result np-server)"; foreign="$(probe_result np-foreign)"
  figures "pod with the worker's labels: $allowed_w; with the server's: $allowed_s; without the MultiVac's labels: $foreign"
  [ "$allowed_w" = "redis=reachable mongodb=reachable" ] || fail "a pod with the worker's labels, which the policies admit, printed '$allowed_w': the probe is broken"
  [ "$allowed_s" = "redis=reachable mongodb=reachable" ] || fail "a pod with the server's labels, which the policies admit, printed '$allowed_s': the probe is broken"
  [ "$foreign" = "redis=blocked mongodb=blocked" ] || fail "NetworkPolicy NOT enforced: a pod without the MultiVac's labels printed '$foreign'"
  # The real app pods, under the same policies, still reach both stores.
  base="$(processed)"
  [ "$(curl -s -o /dev/null -w '%{http_code}' -F data="policy check" "$URL/multivac/data")" = 202 ] || fail "the server did not accept a datum (Redis) with the policies in force"
  wait_drained $((base + 1)) 180 >/dev/null || fail "a datum was not processed (Redis and MongoDB from the worker) with the policies in force"
  figures "the app's server and worker pods: a datum queued and processed"
  k -n "$NS" delete pod np-worker np-server np-foreign --wait=false >/dev/null 2>&1 || true
}

s_rolling_update() {
  local base json new old_pods t rollout_s
  base="$(processed)"
  new="$(img multivac)-rollout"
  mapfile -t old_pods < <(component_pods server)
  load_start rollout rollout
  sleep 5
  t=$(now_ms)
  k -n "$NS" patch mv "$MV" --type merge -p "{\"spec\":{\"image\":\"$new\"}}" >/dev/null
  local until_t=$(( $(date +%s) + 180 ))
  until [ "$(k -n "$NS" get deploy "$MV-server" -o jsonpath='{.spec.template.spec.containers[0].image}')" = "$new" ]; do
    [ "$(date +%s)" -lt "$until_t" ] || fail "the operator did not roll the image into $MV-server within 180 s"
    sleep 0.5
  done
  k -n "$NS" rollout status "deploy/$MV-server" --timeout=180s >/dev/null || fail "the rollout of $MV-server did not finish in 180 s"
  # ...and until the old pods are gone, not only replaced.
  while [ -n "$(k -n "$NS" get pod "${old_pods[@]}" --ignore-not-found -o name 2>/dev/null)" ]; do
    [ "$(date +%s)" -lt "$until_t" ] || fail "the old server pods ${old_pods[*]} still exist 180 s later"
    sleep 0.5
  done
  rollout_s="$(secs_since_ms "$t")"
  sleep 5
  json="$(load_stop rollout)"
  figures "image changed, rolled out in $rollout_s s (old pods gone); $(load_summary "$json")"
  local p; p="$(drained_exactly "$base" "$json" 300)"
  figures "processed +$p"
  [ "$(echo "$json" | field not_accepted)" -eq 0 ] \
    || fail "$(echo "$json" | field not_accepted) of $(echo "$json" | field sent) requests failed during the rollout ($(load_errors "$json"), from $(echo "$json" | field first_failure_s) s to $(echo "$json" | field last_failure_s) s of the load; the image changed at 5 s)"
}

# store_outage COMPONENT: deletes the COMPONENT (redis or mongodb) pod under
# load, with the node cordoned for $OUTAGE s so that its replacement cannot
# start before (FerretDB is back in about 2 s, faster than a real MongoDB and
# than the server's readiness probe, period 5 s x 2, can notice), then
# uncordons it; prints the load's JSON once the new pod has been Ready for 5 s.
store_outage() {
  local c="$1" old t ready_s="" p
  mapfile -t old < <(component_pods "$c")
  [ "${#old[@]}" -eq 1 ] || fail "expected one $c pod, found: ${old[*]}"
  load_start "$c" "$c-down"
  sleep 5
  t=$(now_ms)
  k cordon "$NODE" >/dev/null
  k -n "$NS" delete pod "${old[0]}" --wait=false >/dev/null
  sleep "$OUTAGE"
  k uncordon "$NODE" >/dev/null
  local until_t=$(( $(date +%s) + 240 ))
  while :; do
    for p in $(component_pods "$c"); do
      [ "$p" = "${old[0]}" ] && continue
      if [ "$(k -n "$NS" get pod "$p" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; then ready_s="$(secs_since_ms "$t")"; fi
    done
    [ -n "$ready_s" ] && break
    [ "$(date +%s)" -lt "$until_t" ] || fail "no new $c pod became Ready within 240 s of the uncordon"
    sleep 0.5
  done
  sleep 5
  echo "$ready_s" > "$RUN/outage-$c"
  load_stop "$c"
}

s_mongodb_deleted() {
  local base json p
  base="$(processed)"
  json="$(store_outage mongodb)"
  figures "MongoDB pod deleted (node cordoned ${OUTAGE} s), a new one Ready after $(cat "$RUN/outage-mongodb") s; $(load_summary "$json")"
  p="$(drained_exactly "$base" "$json" 300)"
  figures "processed +$p after it returned (every 202)"
  [ "$(echo "$json" | field not_accepted)" -eq 0 ] \
    || fail "$(echo "$json" | field not_accepted) of $(echo "$json" | field sent) POSTs were not accepted while MongoDB was away ($(load_errors "$json"), from $(echo "$json" | field first_failure_s) s to $(echo "$json" | field last_failure_s) s of the load; MongoDB was deleted at 5 s)"
}

# A credentials rotation under steady POST load: the operator changes the
# passwords inside Redis and MongoDB, then the Secret, rolls the server and
# the workers, and later retires the old passwords (docs/operator.md).
s_rotation() {
  local base json p v t rotated_s="" until_t
  base="$(processed)"
  load_start rotation rotate
  sleep 5
  v="e2e-$(date +%s)"; t=$(now_ms)
  k -n "$NS" annotate multivac "$MV" multivac.io/rotate-credentials="$v" --overwrite >/dev/null
  until_t=$(( $(date +%s) + 600 ))
  while :; do
    if [ "$(k -n "$NS" get secret "$MV-credentials" -o jsonpath='{.metadata.annotations.multivac\.io/rotated}')" = "$v" ]; then
      rotated_s="$(secs_since_ms "$t")"; break
    fi
    [ "$(date +%s)" -lt "$until_t" ] || { load_stop rotation >/dev/null; fail "the rotation $v was not done within 600 s: $(k -n "$NS" get mv "$MV" -o jsonpath='{.status.conditions}')"; }
    sleep 1
  done
  sleep 5
  json="$(load_stop rotation)"
  figures "rotation done (Secret annotated rotated=$v) $rotated_s s after the request; $(load_summary "$json")"
  p="$(drained_exactly "$base" "$json" 300)"
  figures "processed +$p after it (every 202)"
}

s_redis_deleted() {
  local base json p
  base="$(processed)"
  json="$(store_outage redis)"
  figures "Redis pod deleted (node cordoned ${OUTAGE} s), a new one Ready after $(cat "$RUN/outage-redis") s; $(load_summary "$json")"
  p="$(drained_exactly "$base" "$json" 300)"
  figures "processed +$p after it returned: every one of the $(echo "$json" | field accepted) 202s"
}

# uids KIND...: "kind/name=uid" of this MultiVac's objects of those kinds.
uids() {
  local kind
  for kind in "$@"; do
    k -n "$NS" get "$kind" -l "app.kubernetes.io/instance=$MV" -o jsonpath="{range .items[*]}$kind/{.metadata.name}={.metadata.uid}{\"\\n\"}{end}"
  done
}

s_recreate() {
  local answer before after t image lost=()
  answer="$(curl -sf "$URL/multivac")" || fail "GET /multivac failed"
  [[ "$answer" == *"LET THERE BE LIGHT!"* ]] || fail "precondition: MultiVAC is not enlightened (answered '$answer')"
  image="$(k -n "$NS" get mv "$MV" -o jsonpath='{.spec.image}')"
  before="$(uids persistentvolumeclaim secret)"
  t=$(now_ms)
  k -n "$NS" delete mv "$MV" --timeout=120s >/dev/null || fail "kubectl delete mv $MV did not finish in 120 s"
  # Until the garbage collector has removed the workloads (whatever else it
  # keeps), so the new MultiVac does not meet the old pods.
  local until_t=$(( $(date +%s) + 180 ))
  while [ -n "$(k -n "$NS" get deploy,pods -l "app.kubernetes.io/instance=$MV" -o name 2>/dev/null)" ]; do
    [ "$(date +%s)" -lt "$until_t" ] || fail "the old MultiVac's Deployments or pods still exist 180 s after its deletion"
    sleep 1
  done
  figures "deleted, its workloads gone after $(secs_since_ms "$t") s"
  mv_manifest "$image" | k -n "$NS" apply -f - >/dev/null
  wait_mv_ready 300 || fail "the re-created MultiVac did not become Ready in 300 s"
  URL="$(service_url)" || fail "no Service after re-creating the MultiVac"
  after="$(uids persistentvolumeclaim secret)"
  local line
  while read -r line; do
    [ -n "$line" ] || continue
    grep -qxF "$line" <<<"$after" || lost+=("${line%%=*}")
  done <<<"$before"
  answer="$(answer_after_ready)"
  figures "created again, Ready after $(secs_since_ms "$t") s; GET /multivac: '$answer' (503s before: $(cat "$RUN/answer-503s")); PVCs and Secrets replaced by new ones: ${lost[*]:-none}"
  [[ "$answer" == *"LET THERE BE LIGHT!"* ]] \
    || fail "after deleting and re-creating the MultiVac, GET /multivac answered '$answer'; deleted with it and made anew: ${lost[*]:-nothing}"
}

# ---- set-up ------------------------------------------------------------------------------------

cleanup() {
  local rc=$?
  jobs -p | xargs -r kill 2>/dev/null || true
  if [ "$KEEP" = 1 ]; then
    log "left running (MULTIVAC_E2E_KEEP=1): export KUBECONFIG=$MULTIVAC_CLUSTER_STATE/kubeconfig; stop it with MULTIVAC_CLUSTER_STATE=$MULTIVAC_CLUSTER_STATE bash hack/cluster.sh down"
    if [ -n "${URL:-}" ]; then
      log "the MultiVac's Service answers on the host (kube-proxy routes its ClusterIP):"
      printf '  curl %s/multivac\n  curl -F data="entropy can be reversed" %s/multivac/data\n  curl %s/zzz/\n' "$URL" "$URL" "$URL"
    fi
  else
    if [ -f "$MULTIVAC_CLUSTER_STATE/.multivac-cluster" ]; then
      bash "$MULTIVAC_ROOT/hack/cluster.sh" down >/dev/null 2>&1 || true
    fi
    # The empty folder of a set-up that failed before `up`.
    rmdir "$MULTIVAC_CLUSTER_STATE" 2>/dev/null || true
  fi
  rm -rf "$RUN"
  exit $rc
}

# setup_fail REASON: no scenario can run; each is reported failed.
setup_fail() {
  printf '\nE2E SET-UP FAILED: %s\n' "$*" >&2
  diagnostics >&2 || true
  not_run "set-up: images, cluster with a real node, operator, MultiVac Ready" "$*"
  summary
  exit 1
}

trap cleanup EXIT

# The debug build `make test` made (`cargo test` builds each package's binary
# for its integration tests): the very same command, so right after `make
# test` nothing is compiled. A `cargo build` would resolve features without
# the dev-dependencies and build the dependency tree a second time.
log "the debug binaries (cargo test --no-run, CARGO_TARGET_DIR=$CARGO_TARGET)"
# The features are hack/test.sh's (hack/lib.sh), so this builds nothing new.
(cd "$MULTIVAC_ROOT" && cargo test --workspace --locked --no-run -q \
  --features "$MULTIVAC_TEST_FEATURES" >&2) || setup_fail "cargo test --no-run failed"
# A copy, so another checkout building into the same shared target folder
# cannot swap the binaries under the image build.
mkdir -p "$RUN/bin"
cp "$MULTIVAC_IMAGE_BINARIES/multivac" "$MULTIVAC_IMAGE_BINARIES/multivac-operator" "$RUN/bin/" \
  || setup_fail "no debug binaries in $MULTIVAC_IMAGE_BINARIES"
MULTIVAC_IMAGE_BINARIES="$RUN/bin"
bash "$MULTIVAC_ROOT/hack/node/build.sh" >/dev/null || setup_fail "building the node's binaries failed"
bash "$MULTIVAC_ROOT/hack/images/test.sh" || setup_fail "the images differ from Dockerfile.app / Dockerfile.operator"
bash "$MULTIVAC_ROOT/hack/images/build.sh" ensure redis ferretdb pause >/dev/null || setup_fail "building the redis, ferretdb or pause image failed"
log "[$(since "$T0") s] images built"

bash "$MULTIVAC_ROOT/hack/cluster.sh" up --real-node || setup_fail "the cluster with a real node did not come up"
bash "$MULTIVAC_ROOT/hack/images/build.sh" import "$MULTIVAC_CLUSTER_STATE/node" \
  multivac multivac-operator redis ferretdb >/dev/null || setup_fail "importing the images failed"
IMAGE="$(img multivac)"
# The same app image under a second name: the rolling update changes spec.image to it.
# shellcheck source=hack/node/containerd.sh
source "$MULTIVAC_ROOT/hack/node/containerd.sh"
NODE_STATE="$MULTIVAC_CLUSTER_STATE/node" nctr images tag --force "$IMAGE" "$IMAGE-rollout" >/dev/null \
  || setup_fail "ctr images tag failed"
NODE="$(k get nodes -l multivac.io/real-node=true -o jsonpath='{.items[0].metadata.name}')"
[ -n "$NODE" ] || setup_fail "no real node registered"
log "[$(since "$T0") s] cluster and real node up"

op_img="$(img multivac-operator)"
k create namespace "$OP_NS" >/dev/null
k label namespace "$OP_NS" pod-security.kubernetes.io/enforce=restricted >/dev/null
"$BIN/helm" --kubeconfig "$MULTIVAC_CLUSTER_STATE/kubeconfig" install mvo "$MULTIVAC_ROOT/charts/multivac-operator" \
  -n "$OP_NS" --set replicaCount=1 \
  --set image.repository="${op_img%:*}" --set image.tag="${op_img##*:}" --set image.pullPolicy=Never \
  --set logFormat=text --wait --timeout 180s >/dev/null \
  || setup_fail "helm install of the operator did not become ready"
log "[$(since "$T0") s] operator installed (helm)"

k create namespace "$NS" >/dev/null
k label namespace "$NS" pod-security.kubernetes.io/enforce=restricted >/dev/null
mv_manifest "$IMAGE" | k -n "$NS" apply -f - >/dev/null
wait_mv_ready 300 || setup_fail "MultiVac $MV did not become Ready in 300 s"
k -n "$NS" get pods -o wide >&2
URL="$(service_url)" || setup_fail "no Service $MV-server"
log "[$(since "$T0") s] MultiVac Ready; the server's Service: $URL"

# ---- the scenarios -------------------------------------------------------------------------------

# Each scenario starts from a Ready MultiVac and reads its Service again (the
# re-creation scenario replaces it).
run_scenario() {
  k uncordon "$NODE" >/dev/null 2>&1 || true
  if ! wait_mv_ready 180; then
    not_run "$1" "not run: the MultiVac was not Ready (after the previous scenario)"
    return
  fi
  URL="$(service_url)"
  scenario "$1" "$2"
}
run_scenario "seed flow: INSUFFICIENT DATA -> LET THERE BE LIGHT!" s_seed_flow
run_scenario "burst of $BURST: workers scale 0 -> N -> 0, every datum once" s_burst
run_scenario "worker pods killed mid-processing: nothing lost" s_kill_workers
run_scenario "scale to zero, wake on one datum" s_wake_from_zero
run_scenario "NetworkPolicy enforced: only the app's pods reach Redis and MongoDB" s_network_policy
run_scenario "rolling update of the server under steady POST load: 0 failed requests" s_rolling_update
run_scenario "MongoDB pod deleted under load: POSTs accepted, all processed after" s_mongodb_deleted
run_scenario "Redis pod deleted under load: every 202 processed after it returns" s_redis_deleted
run_scenario "credentials rotated under steady POST load: every 202 processed" s_rotation
run_scenario "MultiVac deleted once enlightened, created again: still LET THERE BE LIGHT!" s_recreate

# ---- teardown ------------------------------------------------------------------------------------

# s_teardown: `down` is timed (a figure, not an assertion) and checked to
# leave nothing of the node behind on the machine.
s_teardown() {
  local t left=() pid
  t=$(now_ms)
  bash "$MULTIVAC_ROOT/hack/cluster.sh" down >&2 || fail "hack/cluster.sh down failed"
  figures "hack/cluster.sh down took $(secs_since_ms "$t") s"
  for pid in $(pgrep -f "$MULTIVAC_CLUSTER_STATE/" || true); do
    [ "$pid" = $$ ] || [ "$pid" = "$BASHPID" ] || left+=("process $pid: $(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-80)")
  done
  if grep -qF "$MULTIVAC_CLUSTER_STATE/" /proc/mounts; then left+=("mounts: $(grep -cF "$MULTIVAC_CLUSTER_STATE/" /proc/mounts)"); fi
  if iptables-save 2>/dev/null | grep -qE '(^:|-j )KUBE-'; then left+=("iptables: $(iptables-save | grep -cE '(^:|-j )KUBE-') KUBE-* chains/rules"); fi
  if ipset list -n 2>/dev/null | grep -qE '^KUBE-(SRC|DST)-'; then left+=("ipsets: $(ipset list -n | grep -cE '^KUBE-(SRC|DST)-')"); fi
  if ip link show mvbr0 >/dev/null 2>&1; then left+=("interface mvbr0"); fi
  if ip -o link show type veth 2>/dev/null | grep -q 'master mvbr0'; then left+=("veth interfaces on mvbr0"); fi
  if grep -q multivac-real-node /etc/hosts; then left+=("/etc/hosts line"); fi
  if [ -d "$MULTIVAC_CLUSTER_STATE" ]; then left+=("state folder $MULTIVAC_CLUSTER_STATE"); fi
  [ ${#left[@]} -eq 0 ] || fail "left behind: ${left[*]}"
  figures "no process, mount, KUBE-* iptables rule or ipset, bridge, veth or hosts line left"
}
if [ "$KEEP" != 1 ]; then
  scenario "teardown: hack/cluster.sh down leaves nothing behind" s_teardown
fi

summary
