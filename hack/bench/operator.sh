#!/usr/bin/env bash
# Scale benchmark of the operator (issue 16) on the local control plane, for
# each count in MULTIVACS (default "100 1000"), each on a fresh cluster whose
# kwok nodes have room for the pods and whose provisioner binds the PVCs:
#   1. N MultiVacs with managed stores applied at once (8 parallel kubectl
#      applies): the time from the last apply to all Ready, and from the first;
#   2. the operator restarted (SIGTERM: the stop time), then a 5-minute idle
#      window (IDLE seconds): API writes, the operator's resident memory,
#      threads, CPU seconds per idle minute and one scaler cycle, with Redis
#      unresolvable (the managed stores' <mv>-redis.<ns>.svc names do not
#      resolve on kwok);
#   3. every MultiVac reconciled once more (an annotation poke): API requests
#      per reconcile;
#   4. every MultiVac switched to an external Redis: a real redis-server on
#      loopback (one for all, one connection per MultiVac); once the scaler
#      reads every backlog, the operator is restarted again and memory,
#      threads, CPU and one scaler cycle are measured with Redis reachable.
# What stands in for MongoDB: a MultiVac with a managed MongoDB is Ready only
# once the operator has made the app's MongoDB user in it (usersInfo, then
# createUser). kwok runs no containers and the operator runs on this host,
# where <mv>-mongodb.<ns>.svc does not resolve, so ONE FerretDB (SQLite, from
# hack/deps/ferretdb.sh) on loopback stands in for every MultiVac's MongoDB:
# the operator reaches each <mv>-mongodb.<ns>.svc:27017 there
# (MULTIVAC_OPERATOR_STORE_ADDRESSES). The MultiVacs share its root user, so
# their credentials Secrets are created before them with the same passwords,
# as a restore from a backup would create them (docs/operator.md): copies of
# the Secret the operator generated for a seed MultiVac in another namespace,
# each with its own MultiVac's name, owner annotation and host names. FerretDB
# starts with that root user; the first reconcile to reach it creates the app
# user, every other MultiVac finds it (usersInfo). Ready does not wait for
# Redis, which stays unresolvable until step 4.
# The operator runs as its ServiceAccount with the RBAC of config/rbac (least
# privilege, as deployed). The API server's apiserver_request_total has no
# user or user-agent label, so its requests are counted by the API server
# through API Priority and Fairness: FlowSchemas matching only the operator's
# ServiceAccount (gets; lists and watches; writes), each counted in
# apiserver_flowcontrol_dispatched_requests_total{flow_schema}; they keep the
# priority level the ServiceAccount gets anyway (workload-low). Its requests
# also carry User-Agent multivac-operator/<version> (the API server's logs).
#   MULTIVACS="100 1000" IDLE=300 CONCURRENCY=16 [OPERATOR=path/to/binary] bash hack/bench/operator.sh
# The operator is built with the release profile (niced) unless OPERATOR is given.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/../lib.sh"
# shellcheck source=hack/cluster/version.sh
source "$MULTIVAC_ROOT/hack/cluster/version.sh"
cd "$MULTIVAC_ROOT"

MULTIVACS="${MULTIVACS:-100 1000}"
IDLE="${IDLE:-300}"
CONCURRENCY="${CONCURRENCY:-16}"
POLL=5   # the MultiVacs' pollIntervalSeconds (the default)
WORK="$(mktemp -d /tmp/multivac-bench-operator.XXXXXX)"
PASSWORD="bench-$(date +%s)-$$"
OPERATOR_PID=""
REDIS_PID=""
MONGODB_PID=""
STORE_ADDRESSES=""   # the operator's MULTIVAC_OPERATOR_STORE_ADDRESSES
PATH="$(cluster_bin_dir):$PATH"

cleanup() {
  set +e
  [ -n "$OPERATOR_PID" ] && kill -9 "$OPERATOR_PID" 2>/dev/null
  [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null
  [ -n "$MONGODB_PID" ] && kill "$MONGODB_PID" 2>/dev/null && wait "$MONGODB_PID" 2>/dev/null
  [ -n "${MULTIVAC_CLUSTER_STATE:-}" ] && bash hack/cluster.sh down >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${OPERATOR:-}" ]; then
  log "building the operator (release profile)"
  nice -n 10 cargo build -q --release --locked -p multivac-operator --bins
  OPERATOR="${CARGO_TARGET_DIR:-target}/release/multivac-operator"
fi
REDIS_SERVER="$(bash hack/deps/redis.sh)"
FERRETDB="${MULTIVAC_TEST_FERRETDB:-$(bash hack/deps/ferretdb.sh)}"
[ -x "$FERRETDB" ] || die "$FERRETDB is missing: run \`bash hack/deps/ferretdb.sh\`"
bash hack/cluster.sh build

now() { date +%s.%N; }
calc() { python3 -c "print($1)"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# ---- the operator process -----------------------------------------------------

METRICS_PORT=""
start_operator() {
  METRICS_PORT="$(free_port)"
  KUBECONFIG="$SA_KUBECONFIG" RUST_LOG=warn POD_NAMESPACE=multivac-system \
    MULTIVAC_OPERATOR_STORE_ADDRESSES="$STORE_ADDRESSES" "$OPERATOR" \
    --leader-election=false --concurrency "$CONCURRENCY" --metrics-bind "127.0.0.1:$METRICS_PORT" \
    >>"$WORK/operator.log" 2>&1 &
  OPERATOR_PID=$!
  for _ in $(seq 100); do curl -sf "127.0.0.1:$METRICS_PORT/readyz" >/dev/null && return; sleep 0.1; done
  tail -20 "$WORK/operator.log" >&2
  die "the operator did not become ready"
}
# stop_operator: SIGTERM; sets STOP_SECS to the seconds until the process
# exited (SIGKILL after 30 s).
STOP_SECS=""
alive() { [ -r "/proc/$1/stat" ] && [ "$(awk '{ print $3 }' "/proc/$1/stat")" != Z ]; }
stop_operator() {
  local t0 n=0
  t0="$(now)"
  kill -TERM "$OPERATOR_PID"
  while alive "$OPERATOR_PID" && [ "$n" -lt 300 ]; do sleep 0.05; n=$((n + 1)); done
  STOP_SECS="$(calc "f'{$(now) - $t0:.2f}'")"
  if alive "$OPERATOR_PID"; then
    kill -9 "$OPERATOR_PID"
    STOP_SECS="more than 15 (killed)"
  fi
  wait "$OPERATOR_PID" 2>/dev/null || true
  OPERATOR_PID=""
}
# op METRIC [FILTER]: sum of an operator metric family (lines starting with METRIC, containing FILTER).
op() {
  curl -sf "127.0.0.1:$METRICS_PORT/metrics" \
    | awk -v m="$1" -v f="${2:-}" 'index($0, m) == 1 && index($0, f) { s += $NF } END { printf "%.6f\n", s + 0 }'
}
proc() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$OPERATOR_PID/status"; }   # VmRSS, VmHWM (kB), Threads
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/${1:-$OPERATOR_PID}/stat"; }
# component_ticks: "name ticks" of the operator and every cluster component,
# to tell which one a phase kept busy.
component_ticks() {
  echo "operator $(cpu_ticks)"
  [ -n "$MONGODB_PID" ] && echo "ferretdb $(cpu_ticks "$MONGODB_PID")"
  for f in "$MULTIVAC_CLUSTER_STATE"/pids/*.pid; do
    [ -r "/proc/$(cat "$f")/stat" ] && echo "$(basename "$f" .pid) $(cpu_ticks "$(cat "$f")")"
  done
}
# cpu_split BEFORE AFTER: CPU seconds each used between two component_ticks snapshots.
cpu_split() {
  awk -v hz="$HZ" 'NR == FNR { t[$1] = $2; next } ($1 in t) { printf "%s%s %.1f", sep, $1, ($2 - t[$1]) / hz; sep = ", " }' "$1" "$2"
}
HZ="$(getconf CLK_TCK)"

# ---- the API server's count of the operator's requests ---------------------------

flowschemas() {
  local name verbs
  for pair in "gets:get" "lists:list,watch" "writes:create,update,patch,delete,deletecollection"; do
    name="${pair%%:*}"; verbs="${pair#*:}"
    cat <<EOF
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata: {name: bench-operator-$name}
spec:
  matchingPrecedence: 1000
  priorityLevelConfiguration: {name: workload-low}
  distinguisherMethod: {type: ByUser}
  rules:
  - subjects: [{kind: ServiceAccount, serviceAccount: {name: multivac-operator, namespace: multivac-system}}]
    resourceRules: [{verbs: [${verbs}], apiGroups: ["*"], resources: ["*"], clusterScope: true, namespaces: ["*"]}]
---
EOF
  done
}
# apf: "gets lists writes" as counted by the API server so far.
apf() {
  kubectl get --raw /metrics | awk '
    /^apiserver_flowcontrol_dispatched_requests_total\{/ {
      for (k in n) if (index($0, "flow_schema=\"bench-operator-" k "\"")) n[k] += $NF }
    BEGIN { n["gets"] = 0; n["lists"] = 0; n["writes"] = 0 }
    END { printf "%d %d %d\n", n["gets"], n["lists"], n["writes"] }'
}

# api_total: every request the API server served so far, all clients.
api_total() {
  kubectl get --raw /metrics | awk '/^apiserver_request_total\{/ { s += $NF } END { printf "%d\n", s }'
}

# ---- the MongoDB stand-in -----------------------------------------------------------

# start_mongodb DIR PORT USER PASSWORD: FerretDB with that root user (as the
# MongoDB image's first start makes it), on 127.0.0.1:PORT; sets MONGODB_PID.
start_mongodb() {
  mkdir -p "$1"
  FERRETDB_SETUP_USERNAME="$3" FERRETDB_SETUP_PASSWORD="$4" "$FERRETDB" --handler=sqlite \
    --sqlite-url="file:$1/" --state-dir="$1" --listen-addr="127.0.0.1:$2" --debug-addr=127.0.0.1:0 \
    --telemetry=disable --log-level=error --test-enable-new-auth --setup-database=admin >"$1.log" 2>&1 &
  MONGODB_PID=$!
  for _ in $(seq 100); do (: <"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return; sleep 0.1; done
  cat "$1.log" >&2
  die "FerretDB did not listen on 127.0.0.1:$2"
}
# secret_value SECRET_JSON KEY: a Secret's value, decoded.
secret_value() {
  python3 -c 'import base64, json, sys; print(base64.b64decode(json.load(open(sys.argv[1]))["data"][sys.argv[2]]).decode())' "$1" "$2"
}
stop_mongodb() { kill "$MONGODB_PID"; wait "$MONGODB_PID" 2>/dev/null || true; MONGODB_PID=""; }

# restored_secrets SEED_JSON NS N: credentials Secrets for the MultiVacs
# mv<i> of NS (i = 1..N as `seq -w` writes it), copied from the seed
# MultiVac's generated Secret as a restore from its backup would create them
# (docs/operator.md): the same passwords, with this MultiVac's name, owner
# annotation, instance label and store host names.
restored_secrets() {
  python3 - "$1" "$2" "$3" <<'EOF'
import base64, json, sys
seed, ns, n = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3])
meta = seed["metadata"]
old_ns, old_name = meta["annotations"]["multivac.io/owner"].split("/")
items = []
for i in range(1, n + 1):
    name = f"mv{i:0{len(str(n))}d}"
    data = {}
    for key, value in seed["data"].items():
        text = base64.b64decode(value).decode()
        for store in ("redis", "mongodb"):
            text = text.replace(f"@{old_name}-{store}.{old_ns}.svc:", f"@{name}-{store}.{ns}.svc:")
        data[key] = base64.b64encode(text.encode()).decode()
    labels = {k: (name if v == old_name else v) for k, v in meta.get("labels", {}).items()}
    annotations = dict(meta["annotations"], **{"multivac.io/owner": f"{ns}/{name}"})
    items.append({"apiVersion": "v1", "kind": "Secret", "type": seed.get("type", "Opaque"), "data": data,
                  "metadata": {"name": f"{name}-credentials", "namespace": ns,
                               "labels": labels, "annotations": annotations}})
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
EOF
}

# ---- MultiVacs -------------------------------------------------------------------

established() {
  [ "$(kubectl get crd multivacs.multivac.io -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' 2>/dev/null)" = True ]
}

multivac() { # NAME [NAMESPACE]
  printf 'apiVersion: multivac.io/v1alpha1\nkind: MultiVac\nmetadata: {name: %s, namespace: %s}\nspec: {image: "multivac:bench"}\n---\n' "$1" "${2:-$NS}"
}
# count_condition TYPE STATUS: MultiVacs whose condition TYPE has STATUS.
count_condition() {
  kubectl -n "$NS" get mv --chunk-size=500 \
    -o jsonpath="{range .items[*]}{.status.conditions[?(@.type==\"$1\")].status}{\"\\n\"}{end}" | grep -cx "$2" || true
}
wait_count() { # WHAT TYPE STATUS N TIMEOUT
  local deadline=$(( $(date +%s) + $5 )) got
  while :; do
    got="$(count_condition "$2" "$3")"
    [ "$got" -ge "$4" ] && return
    [ "$(date +%s)" -lt "$deadline" ] || { tail -20 "$WORK/operator.log" >&2; die "$1: $got of $4 after $5 s"; }
    sleep 2
  done
}
# settle RECONCILES: waits until the operator has reconciled RECONCILES times
# and then its API writes (status writes of the scaler included) stay put for
# 10 s; at most 600 s, then says so. Not until reconciles stop: a MultiVac
# whose pods use a Secret of the user is rechecked every 60 s, so at 1,000
# they never pause for 10 s.
settle() {
  local deadline=$(( $(date +%s) + 600 )) last="" cur
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if [ "$(calc "int($(op multivac_operator_reconciliations_total))")" -ge "$1" ]; then
      cur="$(op multivac_operator_api_writes_total)"
      [ "$cur" = "$last" ] && return
      last="$cur"
    fi
    sleep 10
  done
  echo "  (not settled after 600 s: measuring anyway)" | out
}

# poll histogram snapshot, for one scaler cycle
buckets() { curl -sf "127.0.0.1:$METRICS_PORT/metrics" | grep '^multivac_scaler_poll_duration_seconds_bucket' || true; }
max_bucket() { # BEFORE AFTER: the smallest bucket bound holding every poll between the snapshots
  python3 - "$1" "$2" <<'EOF'
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
print(next((le for _, le in sorted((float(le), le) for le in delta if le != "+Inf") if delta[le] >= total), "+Inf"))
EOF
}

# measure LABEL SECONDS: writes, memory, threads, CPU and the scaler cycle over an idle window.
measure() {
  local label="$1" secs="$2" a0 a1 w0 w1 c0 c1 n0 n1 s0 s1 r0 r1
  buckets > "$WORK/b0"
  read -r -a a0 < <(apf); w0="$(op multivac_operator_api_writes_total)"; r0="$(op multivac_operator_reconciliations_total)"
  c0="$(cpu_ticks)"; n0="$(op multivac_scaler_poll_duration_seconds_count)"; s0="$(op multivac_scaler_poll_duration_seconds_sum)"
  sleep "$secs"
  read -r -a a1 < <(apf); w1="$(op multivac_operator_api_writes_total)"; r1="$(op multivac_operator_reconciliations_total)"
  c1="$(cpu_ticks)"; n1="$(op multivac_scaler_poll_duration_seconds_count)"; s1="$(op multivac_scaler_poll_duration_seconds_sum)"
  buckets > "$WORK/b1"
  local cycles; cycles="$(calc "$secs / $POLL")"
  printf '  %-34s %s\n' \
    "API writes in $secs s idle:" "$((a1[2] - a0[2])) (API server: the operator's ServiceAccount); $(calc "int($w1 - $w0)") (operator's count); reconciles $(calc "int($r1 - $r0)")" \
    "API reads in $secs s idle:" "$((a1[0] - a0[0])) gets, $((a1[1] - a0[1])) lists/watches" \
    "operator resident memory:" "$(( $(proc VmRSS) / 1024 )) MiB (peak $(( $(proc VmHWM) / 1024 )) MiB), $(proc Threads) threads" \
    "operator CPU per idle minute:" "$(calc "f'{($c1 - $c0) / $HZ / ($secs / 60):.2f}'") s" \
    "one scaler cycle ($POLL s):" "$(calc "f'{($n1 - $n0) / $cycles:.0f}'") polls, $(calc "f'{($s1 - $s0) / $cycles:.3f}'") s summed, slowest <= $(max_bucket "$WORK/b0" "$WORK/b1") s (each poller on its own timer, spread over the interval)" \
    | sed "s/^/[$label] /"
}

# ---- one run per count --------------------------------------------------------------

out() { tee -a "$WORK/report.txt"; }

bench() {
  local n="$1" t0 t1 t2 a0 a1 r0 r1 q0 q1
  export MULTIVAC_CLUSTER_STATE="$WORK/cluster-$n"
  log "$n MultiVacs: starting a local control plane"
  bash hack/cluster.sh up >/dev/null
  eval "$(bash hack/cluster.sh env)"
  NS="bench-$n"
  kubectl apply --server-side --field-manager=bench -f crds/multivacs.multivac.io.yaml >/dev/null
  # Not `kubectl wait`: it fails at once while the new CRD's conditions are still null.
  for _ in $(seq 60); do established && break; sleep 1; done
  established || die "the MultiVac CRD is not Established after 60 s"
  kubectl create namespace multivac-system >/dev/null
  kubectl apply -k config/rbac >/dev/null
  flowschemas | kubectl apply -f - >/dev/null
  SA_KUBECONFIG="$(bash hack/cluster.sh sa-kubeconfig multivac-system multivac-operator)"
  kubectl create namespace "$NS" >/dev/null
  local mongodb_port seed_ns="$NS-seed"
  mongodb_port="$(free_port)"
  STORE_ADDRESSES="$(for i in $(seq -w 1 "$n"); do echo "mv$i-mongodb.$NS.svc:27017=127.0.0.1:$mongodb_port"; done | paste -sd, -)"
  start_operator

  log "the MultiVacs' credentials, restored from a seed MultiVac's; FerretDB with its root user"
  kubectl create namespace "$seed_ns" >/dev/null
  multivac seed "$seed_ns" | kubectl apply -f - >/dev/null
  for _ in $(seq 120); do
    kubectl -n "$seed_ns" get secret seed-credentials -o json >"$WORK/seed.json" 2>/dev/null && break
    sleep 0.5
  done
  [ -s "$WORK/seed.json" ] || die "the operator made no Secret seed-credentials in 60 s"
  kubectl delete namespace "$seed_ns" --timeout=300s >/dev/null
  restored_secrets "$WORK/seed.json" "$NS" "$n" | kubectl create -f - >/dev/null
  start_mongodb "$WORK/mongodb-$n" "$mongodb_port" \
    "$(secret_value "$WORK/seed.json" mongodb-username)" "$(secret_value "$WORK/seed.json" mongodb-password)"
  rm -f "$WORK/seed.json"

  echo "== $n MultiVacs (operator release build, --concurrency $CONCURRENCY; load average $(loadavg) at the start) ==" | out
  echo "  MongoDB: one FerretDB (SQLite) on 127.0.0.1:$mongodb_port stands in for all $n managed MongoDBs (kwok runs no containers; the operator on this host reaches each <mv>-mongodb.$NS.svc:27017 there); their credentials Secrets, restored from a seed MultiVac's before they were applied, share its root user; the first reconcile creates the app user, the others find it" | out
  log "1. $n MultiVacs with managed stores applied at once"
  # 5 lines per MultiVac: 8 in each file, applied by 8 kubectl at a time.
  for i in $(seq -w 1 "$n"); do multivac "mv$i"; done | split -l 40 - "$WORK/fleet-"
  read -r -a a0 < <(apf); r0="$(op multivac_operator_reconciliations_total)"; q0="$(api_total)"
  component_ticks > "$WORK/cpu0"
  t0="$(now)"
  find "$WORK" -name 'fleet-*' -print0 | xargs -0 -P 8 -n 1 kubectl apply -f >/dev/null
  t1="$(now)"
  wait_count "all Ready" Ready True "$n" 1800
  t2="$(now)"
  component_ticks > "$WORK/cpu1"
  read -r -a a1 < <(apf); r1="$(op multivac_operator_reconciliations_total)"; q1="$(api_total)"
  rm -f "$WORK"/fleet-*
  printf '  %-34s %s\n' \
    "last apply -> all Ready:" "$(calc "f'{$t2 - $t1:.1f}'") s (first apply -> all Ready $(calc "f'{$t2 - $t0:.1f}'") s; load average $(loadavg))" \
    "operator requests until Ready:" "$((a1[0] - a0[0])) gets, $((a1[1] - a0[1])) lists/watches, $((a1[2] - a0[2])) writes over $(calc "int($r1 - $r0)") reconciles, of $((q1 - q0)) requests the API server served to all clients" \
    "operator memory at Ready:" "$(( $(proc VmRSS) / 1024 )) MiB (peak $(( $(proc VmHWM) / 1024 )) MiB), $(proc Threads) threads" \
    "CPU seconds, first apply -> Ready:" "$(cpu_split "$WORK/cpu0" "$WORK/cpu1")" | out

  log "2. restart, then $IDLE s idle, Redis unresolvable"
  sleep 20
  stop_operator
  start_operator
  settle "$n"
  echo "  SIGTERM -> exit, $n MultiVacs, Redis unresolvable: $STOP_SECS s" | out
  measure "Redis unresolvable" "$IDLE" | out

  log "3. every MultiVac reconciled once more"
  read -r -a a0 < <(apf); r0="$(op multivac_operator_reconciliations_total)"
  kubectl -n "$NS" annotate mv --all "bench-poke=$(date +%s)" >/dev/null
  settle "$(calc "int($r0) + $n")"
  read -r -a a1 < <(apf); r1="$(op multivac_operator_reconciliations_total)"
  printf '  %-34s %s\n' "API requests per reconcile:" "$(calc "f'{($((a1[0] - a0[0] + a1[1] - a0[1] + a1[2] - a0[2]))) / max($r1 - $r0, 1):.2f}'") ($((a1[0] - a0[0])) gets, $((a1[1] - a0[1])) lists/watches, $((a1[2] - a0[2])) writes over $(calc "int($r1 - $r0)") reconciles; the scaler's Secret GETs included)" | out

  log "4. every MultiVac on a reachable Redis"
  kubectl -n "$NS" create secret generic redis-ext \
    --from-literal=redis-url="redis://:$PASSWORD@127.0.0.1:$REDIS_PORT/0" >/dev/null
  kubectl -n "$NS" get mv -o name \
    | xargs -P 8 -n 1 kubectl -n "$NS" patch --type merge \
      -p '{"spec":{"redis":{"managed":null,"external":{"secretRef":{"name":"redis-ext"}}}}}' >/dev/null
  wait_count "backlog read" Degraded False "$n" 600
  sleep 20
  stop_operator
  start_operator
  settle "$n"
  echo "  SIGTERM -> exit, $n MultiVacs, Redis reachable: $STOP_SECS s" | out
  measure "Redis reachable" "$IDLE" | out
  echo "  redis-server clients: $(REDISCLI_AUTH="$PASSWORD" redis-cli -p "$REDIS_PORT" INFO clients | tr -d '\r' | awk -F: '$1 == "connected_clients" { print $2 }')" | out
  stop_operator
  bash hack/cluster.sh down >/dev/null
  unset MULTIVAC_CLUSTER_STATE
  stop_mongodb
}

REDIS_PORT="$(free_port)"
"$REDIS_SERVER" --bind 127.0.0.1 --port "$REDIS_PORT" --requirepass "$PASSWORD" \
  --save "" --appendonly no --dir "$WORK" --maxclients 10000 >/dev/null 2>&1 &
REDIS_PID=$!
for _ in $(seq 100); do REDISCLI_AUTH="$PASSWORD" redis-cli -p "$REDIS_PORT" PING >/dev/null 2>&1 && break; sleep 0.05; done

for n in $MULTIVACS; do
  bench "$n"
done
echo
echo "== operator scale benchmark: bash hack/bench/operator.sh (MULTIVACS=\"$MULTIVACS\" IDLE=$IDLE CONCURRENCY=$CONCURRENCY) =="
cat "$WORK/report.txt"
