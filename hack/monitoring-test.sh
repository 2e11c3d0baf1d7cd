#!/usr/bin/env bash
# The chart's monitoring kit against the real programs (run by hack/test.sh
# while the local control plane is up; KUBECONFIG must point at it):
#   1. rules: the PrometheusRule the chart renders passes `promtool check rules`
#      and the unit tests in hack/monitoring/rules.test.yaml (`promtool test rules`);
#   2. /metrics: the app's server and a worker (on Redis and FerretDB from
#      hack/deps, fed a few data) and the operator (on the control plane, with
#      a MultiVac to scale) run on this host, and each one's /metrics passes
#      `promtool check metrics`;
#   2b. the chart's ServiceMonitor, PodMonitor and PrometheusRule are accepted
#      by the API server under the prometheus-operator's own CRDs (taken from
#      its pinned Go module), in a server-side dry run, and the PodMonitor's
#      port is one the operator's server and worker pods have and the server's
#      Service does not expose;
#   3. names: every metric the rules and the dashboard's panels name is one of
#      those the three programs exported in step 2 (read from their /metrics,
#      so a metric added to the code counts at once), or one of the cluster
#      metrics listed below; every panel's expression parses (promtool).
# Every check runs even when an earlier one fails; the last line says how many
# passed, and the exit status is non-zero on any failure.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=hack/cluster/version.sh
source "$MULTIVAC_ROOT/hack/cluster/version.sh"
cd "$MULTIVAC_ROOT"

bin="$(cluster_bin_dir)"
kubectl="${KUBECTL:-$bin/kubectl}"
helm="$bin/helm"
py="$MULTIVAC_CACHE/tools/hadolint-venv/bin/python" # has PyYAML
for t in "$helm" "$py"; do
  [ -x "$t" ] || die "$t is missing: run \`bash hack/deps/tools.sh\` (or \`make test\`)"
done
[ -n "${KUBECONFIG:-}" ] && "$kubectl" get --raw /readyz >/dev/null 2>&1 \
  || die "no control plane at KUBECONFIG='${KUBECONFIG:-}': start it with \`bash hack/cluster.sh up\` then \`export KUBECONFIG=\$(bash hack/cluster.sh kubeconfig)\`, or run \`make test\`"
promtool="$(bash hack/deps/promtool.sh)"
redis_server="$(bash hack/deps/redis.sh)"
ferretdb="$(bash hack/deps/ferretdb.sh)"

# Metrics the rules read that no MultiVAC program exports: the cluster's own,
# as kube-prometheus-stack scrapes them.
cluster_metrics=(
  container_memory_working_set_bytes   # the kubelet's cAdvisor
  kube_pod_container_resource_limits   # kube-state-metrics
)

work="$(mktemp -d /tmp/multivac-monitoring.XXXXXX)"
# MULTIVAC_TEST_BIN_DIR: test the multivac and multivac-operator binaries
# there (e.g. a release build) instead of building debug ones. A target folder
# shared by several checkouts holds in debug/ whichever checkout linked last.
target="$work/bin"
mkdir -p "$target"
if [ -n "${MULTIVAC_TEST_BIN_DIR:-}" ]; then
  cp "$MULTIVAC_TEST_BIN_DIR"/{multivac,multivac-operator} "$target/"
else
  log "building multivac and multivac-operator"
  cargo build -q --locked -p multivac -p multivac-operator
  cp "${CARGO_TARGET_DIR:-$MULTIVAC_ROOT/target}"/debug/{multivac,multivac-operator} "$target/"
fi

pids=()
ns=multivac-monitoring-test
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  "$kubectl" delete namespace "$ns" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck disable=SC2034 # read by check() in hack/lib.sh
CHECK_TAIL=40

wait_http() { # wait_http URL: up to 30 s for an answer
  local i
  for i in $(seq 1 300); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  die "nothing answers at $1"
}

# --- 1. rules -----------------------------------------------------------------------
log "1. the chart's PrometheusRule: promtool check rules, promtool test rules"
"$helm" template multivac-operator charts/multivac-operator --namespace multivac-system \
  --set prometheusRule.enabled=true --set prometheusRule.runbookBaseURL=https://runbooks.example/runbooks.md \
  --set grafanaDashboard.enabled=true > "$work/chart.yaml"
"$py" - "$work/chart.yaml" "$work" <<'PY'
import json, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
rule = next(d for d in docs if d["kind"] == "PrometheusRule")
yaml.safe_dump({"groups": rule["spec"]["groups"]}, open(sys.argv[2] + "/rules.yaml", "w"), sort_keys=False)
board = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard"))
open(sys.argv[2] + "/dashboard.json", "w").write(board["data"]["multivac.json"])
PY
cp hack/monitoring/rules.test.yaml "$work/"
check "promtool check rules (the chart's PrometheusRule)" "$promtool" check rules "$work/rules.yaml"
check "promtool test rules hack/monitoring/rules.test.yaml" "$promtool" test rules "$work/rules.test.yaml"

# --- 2. /metrics of the three programs ---------------------------------------------------
log "2. /metrics of the server, a worker and the operator: promtool check metrics"
redis_port="$(free_port)"; mongo_port="$(free_port)"
"$redis_server" --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
  --loglevel warning >"$work/redis.log" 2>&1 &
pids+=($!)
mkdir -p "$work/ferretdb"
"$ferretdb" --handler=sqlite --sqlite-url="file:$work/ferretdb/" --state-dir="$work/ferretdb" \
  --listen-addr="127.0.0.1:$mongo_port" --debug-addr=127.0.0.1:0 --telemetry=disable --log-level=error \
  >"$work/ferretdb.log" 2>&1 &
pids+=($!)
server_port="$(free_port)"; server_metrics_port="$(free_port)"; worker_port="$(free_port)"; operator_port="$(free_port)"
redis_url="redis://127.0.0.1:$redis_port" mongodb_uri="mongodb://127.0.0.1:$mongo_port"
# The server's API on one port, its /metrics (and /zzz) on the internal one, as in a pod.
MULTIVAC_REDIS_URL="$redis_url" MULTIVAC_MONGODB_URI="$mongodb_uri" MULTIVAC_BIND="127.0.0.1:$server_port" \
  MULTIVAC_METRICS_BIND="127.0.0.1:$server_metrics_port" "$target/multivac" server >"$work/server.log" 2>&1 &
pids+=($!)
MULTIVAC_REDIS_URL="$redis_url" MULTIVAC_MONGODB_URI="$mongodb_uri" MULTIVAC_METRICS_BIND="127.0.0.1:$worker_port" \
  MULTIVAC_CONSUMER_NAME=monitoring-test "$target/multivac" worker >"$work/worker.log" 2>&1 &
pids+=($!)
# The operator reconciles three MultiVacs, so every series it can export
# shows up: `reachable` uses the Redis above as its external Redis (the
# scaler reads its backlog), `multivac` (the sample) has a managed Redis with
# no pod behind it here (the scaler cannot read it: Degraded), and `broken`
# names an API-token Secret that does not exist (a reconcile error).
"$kubectl" apply --server-side --force-conflicts -f crds/multivacs.multivac.io.yaml >/dev/null
"$kubectl" create namespace "$ns" --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null
"$kubectl" -n "$ns" create secret generic external-redis --from-literal=url="$redis_url" >/dev/null
"$kubectl" -n "$ns" apply -f config/samples/multivac.yaml >/dev/null
"$kubectl" -n "$ns" apply -f - >/dev/null <<YAML
apiVersion: multivac.io/v1alpha1
kind: MultiVac
metadata:
  name: reachable
spec:
  image: multivac:test
  redis:
    external:
      secretRef: {name: external-redis, key: url}
---
apiVersion: multivac.io/v1alpha1
kind: MultiVac
metadata:
  name: broken
spec:
  image: multivac:test
  apiTokenSecretRef: {name: no-such-secret, key: token}
YAML
POD_NAME=monitoring-test POD_NAMESPACE="$ns" MULTIVAC_OPERATOR_WATCH_NAMESPACE="$ns" RUST_LOG=info \
  MULTIVAC_OPERATOR_DEFAULT_APP_IMAGE=multivac:test \
  "$target/multivac-operator" --leader-election=false --metrics-bind="127.0.0.1:$operator_port" --log-format=text \
  >"$work/operator.log" 2>&1 &
pids+=($!)

wait_http "http://127.0.0.1:$server_port/healthz"
wait_http "http://127.0.0.1:$server_metrics_port/healthz"
wait_http "http://127.0.0.1:$worker_port/healthz"
wait_http "http://127.0.0.1:$operator_port/healthz"
for i in 1 2 3 4 5; do
  curl -fsS -o /dev/null -d "data=monitoring datum $i" "http://127.0.0.1:$server_port/multivac/data"
done
curl -fsS -o /dev/null "http://127.0.0.1:$server_port/multivac"
curl -s -o /dev/null "http://127.0.0.1:$server_port/nothing-here"
processed() {
  curl -fsS "http://127.0.0.1:$worker_port/metrics" | awk '$1 == "multivac_worker_processed_total" { print $2 }'
}
# operator_has PATTERN: a line of the operator's /metrics matches PATTERN.
operator_has() { curl -fsS "http://127.0.0.1:$operator_port/metrics" | grep -q "$1"; }
wait_for() { # wait_for SECONDS CMD...
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do [ "$(date +%s)" -lt "$deadline" ] || return 1; sleep 0.5; done
}
learned_all() { [ "$(processed)" = 5 ]; }
scaler_read_reachable() { operator_has "^multivac_scaler_backlog{namespace=\"$ns\",name=\"reachable\"}"; }
sample_degraded() { operator_has "^multivac_scaler_degraded{namespace=\"$ns\",name=\"multivac\"} 1"; }
broken_counted() { operator_has '^multivac_operator_reconcile_errors_total{error="missing_secret"}'; }
wait_for 30 learned_all || true
wait_for 60 scaler_read_reachable || true
wait_for 60 sample_degraded || true
wait_for 30 broken_counted || true

for p in server:$server_metrics_port worker:$worker_port operator:$operator_port; do
  curl -fsS "http://127.0.0.1:${p#*:}/metrics" > "$work/${p%%:*}.metrics"
done
check "the worker learned the 5 data (its metrics count them)" learned_all
status_of() { curl -s -o /dev/null -w '%{http_code}' "$1"; }
check "the server's public port serves no /metrics (404)" \
  bash -c '[ "$1" = 404 ]' _ "$(status_of "http://127.0.0.1:$server_port/metrics")"
check "the server's internal port serves /metrics (200)" \
  bash -c '[ "$1" = 200 ]' _ "$(status_of "http://127.0.0.1:$server_metrics_port/metrics")"
check "the scaler read the backlog of $ns/reachable (external Redis)" \
  grep -q "^multivac_scaler_backlog{namespace=\"$ns\",name=\"reachable\"} 0" "$work/operator.metrics"
check "the scaler exports maxReplicas of $ns/reachable (10, the default)" \
  grep -q "^multivac_scaler_max_replicas{namespace=\"$ns\",name=\"reachable\"} 10" "$work/operator.metrics"
degraded_condition() { "$kubectl" -n "$ns" get multivac "$1" -o jsonpath='{.status.conditions[?(@.type=="Degraded")].status}'; }
check "$ns/multivac (no Redis pod here) is Degraded: gauge 1" \
  grep -q "^multivac_scaler_degraded{namespace=\"$ns\",name=\"multivac\"} 1" "$work/operator.metrics"
check "$ns/multivac's condition Degraded is True" bash -c '[ "$1" = True ]' _ "$(degraded_condition multivac)"
check "$ns/reachable is not Degraded (gauge 0)" \
  grep -q "^multivac_scaler_degraded{namespace=\"$ns\",name=\"reachable\"} 0" "$work/operator.metrics"
check "$ns/broken's missing Secret is counted as a reconcile error" \
  grep -q '^multivac_operator_reconcile_errors_total{error="missing_secret"} [1-9]' "$work/operator.metrics"

# promtool check metrics reads the classic text format; the programs serve
# OpenMetrics, where a counter's HELP and TYPE name the family (`foo`), its
# samples are `foo_total` and `foo_created`, and the page ends with `# EOF`.
# classic rewrites that as the classic format says the same thing (HELP and
# TYPE on `foo_total`, no `_created`, no `# EOF`), so the linter sees every
# name, type and help text as served.
classic() {
  "$py" - "$1" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
counters = {m.group(1) for m in (re.match(r"# TYPE (\S+) counter$", l) for l in lines) if m}
for l in lines:
    if l == "# EOF" or l.startswith("# UNIT "):
        continue
    m = re.match(r"# (HELP|TYPE) (\S+)( .*)?$", l)
    if m and m.group(2) in counters:
        print(f"# {m.group(1)} {m.group(2)}_total{m.group(3) or ''}")
        continue
    name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", l)
    if name and name.group(0).endswith("_created") and name.group(0)[:-len("_created")] in counters:
        continue
    print(l)
PY
}
for p in server worker operator; do
  check "the $p serves OpenMetrics (its page ends with # EOF)" bash -c '[ "$(tail -n 1 "$1")" = "# EOF" ]' _ "$work/$p.metrics"
  classic "$work/$p.metrics" > "$work/$p.prom"
  check "promtool check metrics: $p /metrics" bash -c '"$1" check metrics < "$2"' _ "$promtool" "$work/$p.prom"
done

# --- 2b. the monitors and rules under the prometheus-operator's CRDs ----------------------------
log "2b. the kit's objects under the prometheus-operator's CRDs (server-side dry run)"
PROMETHEUS_OPERATOR_VERSION=v0.85.0
po_dir="$(cd "$work" && GOFLAGS=-mod=mod go mod download -json \
  "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -d "$po_dir/example/prometheus-operator-crd" ] \
  || die "go mod download github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION gave no CRDs"
for crd in servicemonitors podmonitors prometheusrules; do
  "$kubectl" apply --server-side --force-conflicts \
    -f "$po_dir/example/prometheus-operator-crd/monitoring.coreos.com_$crd.yaml" >/dev/null
done
"$kubectl" wait --for=condition=Established --timeout=60s \
  crd/servicemonitors.monitoring.coreos.com crd/podmonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com >/dev/null
"$helm" template multivac-operator charts/multivac-operator --namespace "$ns" \
  --set serviceMonitor.enabled=true --set podMonitor.enabled=true --set prometheusRule.enabled=true \
  --show-only templates/servicemonitor.yaml --show-only templates/podmonitor.yaml \
  --show-only templates/prometheusrule.yaml > "$work/monitors.yaml"
check "ServiceMonitor, PodMonitor and PrometheusRule accepted (prometheus-operator $PROMETHEUS_OPERATOR_VERSION CRDs)" \
  "$kubectl" apply --dry-run=server -f "$work/monitors.yaml"
# The PodMonitor scrapes ports the operator really opens: for every pod it
# selects (the server and worker Deployments the operator built for
# `reachable` above), each endpoint's port is a container port of that pod,
# serving /metrics, and the server's Service does not expose it.
for kind in deploy/reachable-server deploy/reachable-worker svc/reachable-server; do
  "$kubectl" -n "$ns" get "$kind" -o json > "$work/${kind#*/}-${kind%/*}.json" 2>/dev/null || true
done
podmonitor_ports() {
  "$py" - "$work" <<'PY'
import json, sys, yaml
work = sys.argv[1]
monitor = next(d for d in yaml.safe_load_all(open(f"{work}/monitors.yaml")) if d and d["kind"] == "PodMonitor")
ports = [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]]
assert all(e["path"] == "/metrics" for e in monitor["spec"]["podMetricsEndpoints"]), monitor
service = json.load(open(f"{work}/reachable-server-svc.json"))
exposed = {p.get("targetPort") for p in service["spec"]["ports"]}
for component in ("server", "worker"):
    pod = json.load(open(f"{work}/reachable-{component}-deploy.json"))["spec"]["template"]["spec"]
    named = {p["name"]: p["containerPort"] for c in pod["containers"] for p in c.get("ports", [])}
    for port in ports:
        if port not in named:
            sys.exit(f"the PodMonitor scrapes port {port!r}, which the {component} pods do not have ({sorted(named)})")
    print(f"{component}: PodMonitor port(s) {ports} -> {[named[p] for p in ports]}")
leaked = exposed & set(ports)
if leaked:
    sys.exit(f"the server's Service exposes the metrics port(s) {sorted(leaked)}")
print(f"the server's Service exposes only {sorted(exposed)}")
PY
}
check "the PodMonitor's port is the server's and the workers' metrics port, and not in the server's Service" podmonitor_ports

# --- 3. the metrics the rules and the dashboard name exist ------------------------------------
log "3. every metric the rules and the dashboard name is exported"
check_names() {
  "$py" - "$work" "${cluster_metrics[@]}" <<'PY'
import json, re, sys, yaml
work, cluster = sys.argv[1], set(sys.argv[2:])

def exported(path):
    """Every series name a /metrics page can produce: its samples, and the
    names its # TYPE lines imply (a family without samples yet counts too)."""
    names = set()
    for line in open(path):
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()[:4]
            names.add(name)
            names |= {"counter": {name + "_total", name + "_created"},
                      "histogram": {name + "_bucket", name + "_sum", name + "_count", name + "_created"},
                      "summary": {name + "_sum", name + "_count", name + "_created"},
                      "info": {name + "_info"}}.get(kind, set())
        elif line.strip() and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names

known = set()
for p in ("server", "worker", "operator"):
    known |= exported(f"{work}/{p}.metrics")

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "bool", "offset", "inf", "nan", "atan2"}

def metric_names(expr):
    """The metric names a PromQL expression selects: identifiers outside
    strings, label matchers, durations and grouping clauses, not called as
    functions and not keywords."""
    e = re.sub(r'"(\\.|[^"\\])*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        word, rest = m.group(0), e[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in KEYWORDS or re.fullmatch(r"\d+[smhdwy]", word):
            continue
        if e[:m.start()].endswith(("$", ".")) or re.match(r"^\d", word):
            continue
        names.add(word)
    return names

exprs = []
for g in yaml.safe_load(open(f"{work}/rules.yaml"))["groups"]:
    for r in g["rules"]:
        exprs.append(("rule " + r.get("alert", r.get("record", "?")), r["expr"]))
board = json.load(open(f"{work}/dashboard.json"))
def panels(ps):
    for p in ps:
        yield p
        yield from panels(p.get("panels", []))
for p in panels(board["panels"]):
    for t in p.get("targets", []):
        exprs.append((f"panel {p['title']!r}", t["expr"]))
for v in board.get("templating", {}).get("list", []):
    q = v.get("query")
    q = q.get("query") if isinstance(q, dict) else q
    m = re.fullmatch(r"label_values\((.*),\s*\w+\)", q or "")
    if m:
        exprs.append((f"variable {v['name']}", m.group(1)))

# The dashboard's expressions as recording rules, for promtool to parse.
subst = lambda e: e.replace("$__rate_interval", "5m").replace("$namespace", ".*").replace("$name", ".*")
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
    {"record": f"dashboard:expr_{i}", "expr": subst(e)} for i, (_, e) in enumerate(exprs) if not _.startswith("rule ")]}]},
    open(f"{work}/dashboard-rules.yaml", "w"), sort_keys=False)

missing = []
for where, e in exprs:
    for n in sorted(metric_names(e)):
        if n not in known and n not in cluster:
            missing.append(f"{where}: {n} is exported by none of server, worker, operator (expr: {e})")
print(f"{len(exprs)} expressions name {len(set().union(*(metric_names(e) for _, e in exprs)))} metrics; "
      f"{len(known)} series names exported")
if missing:
    print("\n".join(missing))
    sys.exit(1)
PY
}
check "every metric named by the rules and the dashboard is exported (or a cluster metric)" check_names
check "every dashboard expression parses (promtool check rules)" "$promtool" check rules "$work/dashboard-rules.yaml"

check_summary monitoring
