#!/usr/bin/env bash
# Every lint (`make lint`; hack/test.sh runs it before the control plane
# starts). Every check runs even when an earlier one fails; the last line says
# how many passed, and the exit status is non-zero on any failure.
#
#   bash hack/lint.sh [GROUP...]   GROUP: fmt, clippy, files (default: all three)
#
#   fmt     cargo fmt --check
#   clippy  cargo clippy on every target, warnings denied
#   files   shellcheck on every script, the generated files current (`cargo
#           xtask generate` changes nothing), hadolint on the Dockerfiles, the
#           Helm chart and its values schema (with the monitoring kit on),
#           the chart's RBAC against kustomize's, one version everywhere, the
#           chart's README, and the GitLab pipeline file. Needs `bash hack/cluster.sh
#           build` and `bash hack/deps/tools.sh`.
#
# The pipeline runs each group in its own job (.gitlab-ci.yml), once.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
# shellcheck source=hack/cluster/version.sh
source "$MULTIVAC_ROOT/hack/cluster/version.sh"
cd "$MULTIVAC_ROOT"

groups=("$@")
[ ${#groups[@]} -gt 0 ] || groups=(fmt clippy files)
for g in "${groups[@]}"; do
  case "$g" in
    fmt | clippy | files) ;;
    *) die "unknown lint group '$g': use fmt, clippy or files" ;;
  esac
done
wants() { [[ " ${groups[*]} " == *" $1 "* ]]; }

work="$(mktemp -d /tmp/multivac-lint.XXXXXX)"
trap 'rm -rf "$work"' EXIT

# --- Rust -----------------------------------------------------------------------
if wants fmt; then
  check "cargo fmt --check" cargo fmt --all -- --check
fi
if wants clippy; then
  check "cargo clippy -D warnings" cargo clippy --workspace --all-targets --locked --features "$MULTIVAC_TEST_FEATURES" -- -D warnings
fi
if ! wants files; then
  check_summary lint
  exit
fi

eval "$(bash hack/deps/tools.sh env)"
bin="$(cluster_bin_dir)"
kubectl="${KUBECTL:-$bin/kubectl}"
helm="$bin/helm"
py="$MULTIVAC_CACHE/tools/hadolint-venv/bin/python"
[ -x "$kubectl" ] || die "$kubectl is missing: run \`bash hack/cluster.sh build\` (or \`make test\`)"
for t in "$helm" hadolint gitlab-ci-local shellcheck "$py"; do
  command -v "$t" >/dev/null || die "$t is missing: run \`bash hack/deps/tools.sh\` (or \`make test\`)"
done

chart=charts/multivac-operator

# --- Shell scripts ----------------------------------------------------------------
# Every script under hack/ (and CI's entry point): *.sh, and the files whose
# first line names a shell. Sourced files are followed from their own folder.
shell_scripts() {
  git ls-files .ci hack | while read -r f; do
    case "$f" in
      *.sh) echo "$f" ;;
      *) if head -n 1 "$f" | grep -qE '^#!.*[/ ](ba)?sh$'; then echo "$f"; fi ;;
    esac
  done
}
mapfile -t scripts < <(shell_scripts)
check "shellcheck (${#scripts[@]} scripts, warnings and errors)" \
  shellcheck --external-sources --source-path=SCRIPTDIR --severity=warning "${scripts[@]}"

# --- Generated files ----------------------------------------------------------------
# `cargo xtask generate` must change nothing: on a clean tree that is "generate,
# then git diff --exit-code"; with uncommitted edits, the generated files' diff
# must be the same before and after.
generated_current() {
  local files
  mapfile -t files < <(cargo xtask generate --list)
  [ ${#files[@]} -gt 0 ] || { echo "cargo xtask generate --list printed nothing"; return 1; }
  git diff -- "${files[@]}" > "$work/generated.before"
  cargo xtask generate || return 1
  git diff -- "${files[@]}" > "$work/generated.after"
  if ! cmp -s "$work/generated.before" "$work/generated.after"; then
    git diff --stat -- "${files[@]}"
    diff "$work/generated.before" "$work/generated.after" | head -n 60
    echo "the generated files were stale (now rewritten): run \`make generate\` and commit the result"
    return 1
  fi
  git ls-files --error-unmatch -- "${files[@]}" >/dev/null \
    || { echo "a generated file is not tracked by git: run \`make generate\` and commit it"; return 1; }
}
check "generated files current (cargo xtask generate, then git diff)" generated_current

# --- Dockerfiles ---------------------------------------------------------------
check "hadolint Dockerfile.app" hadolint Dockerfile.app
check "hadolint Dockerfile.operator" hadolint Dockerfile.operator
# Every directory a Dockerfile copies from the context is admitted by
# .dockerignore (which excludes everything else): a builder that honours it
# would otherwise fail on the missing directory.
dockerignore_admits_copies() {
  local f dir absent=0
  for f in Dockerfile.app Dockerfile.operator; do
    while read -r dir; do
      grep -qxF "!$dir/" .dockerignore || { echo "$f copies $dir/, which .dockerignore leaves out: add !$dir/"; absent=1; }
    done < <(awk '$1 == "COPY" && $2 !~ /^--/ && $2 !~ /\./ { print $2 }' "$f")
  done
  return "$absent"
}
check ".dockerignore admits every directory the Dockerfiles copy" dockerignore_admits_copies

# --- Helm chart -------------------------------------------------------------------
check "helm lint --strict" "$helm" lint --strict "$chart"
check "helm lint --strict with the ServiceMonitor" "$helm" lint --strict "$chart" --set serviceMonitor.enabled=true
# The monitoring kit, each part alone and all together (also namespaced).
kit=(--set serviceMonitor.enabled=true --set podMonitor.enabled=true --set prometheusRule.enabled=true --set grafanaDashboard.enabled=true)
check "helm lint --strict with the PodMonitor" "$helm" lint --strict "$chart" --set podMonitor.enabled=true
check "helm lint --strict with the PrometheusRule" "$helm" lint --strict "$chart" --set prometheusRule.enabled=true
check "helm lint --strict with the Grafana dashboard" "$helm" lint --strict "$chart" --set grafanaDashboard.enabled=true
check "helm lint --strict with the whole monitoring kit" "$helm" lint --strict "$chart" "${kit[@]}"
check "helm lint --strict with the kit, tuned" "$helm" lint --strict "$chart" "${kit[@]}" \
  --set watchNamespace=team-a --set prometheusRule.disabled.MultiVacRedisMemoryHigh=true \
  --set prometheusRule.alertLabels.team=data --set prometheusRule.runbookBaseURL=https://wiki.example/multivac \
  --set prometheusRule.backlogGrowingFor=30m --set-json prometheusRule.redisMemoryRatio=0.9 \
  --set grafanaDashboard.namespace=monitoring --set grafanaDashboard.annotations.grafana_folder=MultiVAC \
  --set 'podMonitor.labels.release=kube-prometheus-stack'
check "helm lint --strict with appImage pinned by digest" "$helm" lint --strict "$chart" \
  --set appImage.repository=registry.example/multivac --set appImage.digest="sha256:$(printf '%064d' 0)"
render() { "$helm" template multivac-operator "$chart" --namespace multivac-system "$@"; }
render_defaults() { render > "$work/helm.yaml"; }
check "helm template renders" render_defaults
# The schema must refuse what would break the install, with a message.
fails "values schema refuses an unknown key" render --set replicas=2
fails "values schema refuses replicaCount 0" render --set replicaCount=0
fails "values schema refuses logFormat xml" render --set logFormat=xml
fails "values schema refuses a bad memory quantity" render --set resources.limits.memory=lots
fails "values schema refuses a bad watchNamespace" render --set watchNamespace=Team_A
fails "chart refuses 2 replicas without leader election" render --set leaderElection.enabled=false
fails "values schema refuses an alert name it does not know" render --set prometheusRule.disabled.MultiVacTypo=true
fails "values schema refuses redisMemoryRatio 1.5" render --set-json prometheusRule.redisMemoryRatio=1.5
fails "values schema refuses a runbookBaseURL with a #fragment" render --set prometheusRule.runbookBaseURL=https://x.example/a#b
fails "values schema refuses a bad podMonitor namespace" render --set 'podMonitor.namespaces[0]=Team_A'
fails "values schema refuses an appImage digest that is not sha256" render --set appImage.digest=latest

# monitoring_kit: with every part on, the chart renders a PodMonitor for the
# server's and workers' metrics port, a ServiceMonitor that keeps the scaler's labels, a
# PrometheusRule whose every alert links a runbook section that exists in
# docs/runbooks.md, and a dashboard ConfigMap holding valid JSON whose panels
# all query something.
monitoring_kit() {
  render "${kit[@]}" > "$work/kit.yaml"
  "$py" - "$work/kit.yaml" docs/runbooks.md "$chart" <<'PY'
import json, re, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kind = lambda k: [d for d in docs if d["kind"] == k]
errors = []
sm = kind("ServiceMonitor")
if len(sm) != 1 or [e.get("honorLabels") for e in sm[0]["spec"]["endpoints"]] != [True]:
    errors.append("the ServiceMonitor's endpoint must set honorLabels: true (the scaler's namespace label)")
pm = kind("PodMonitor")
if len(pm) != 1 or sorted((e["port"], e["path"]) for e in pm[0]["spec"]["podMetricsEndpoints"]) != [("metrics", "/metrics")]:
    errors.append("the PodMonitor must scrape the `metrics` port of the server and worker pods at /metrics (the server's public `http` port has no /metrics)")
# The runbooks: a section per alert, linked from its runbook_url.
chart = yaml.safe_load(open(sys.argv[3] + "/Chart.yaml"))
base = f"{chart['home']}/-/blob/{chart['appVersion']}/docs/runbooks.md"
slugs = {re.sub(r"[^\w\- ]", "", l.lstrip("#").strip().lower()).replace(" ", "-")
         for l in open(sys.argv[2]) if l.startswith("#")}
rules = [r for d in kind("PrometheusRule") for g in d["spec"]["groups"] for r in g["rules"]]
if len(rules) < 7:
    errors.append(f"the PrometheusRule has {len(rules)} alerts, expected the 7 of values.schema.json")
for r in rules:
    url = r.get("annotations", {}).get("runbook_url", "")
    want = f"{base}#{r['alert'].lower()}"
    if url != want:
        errors.append(f"{r['alert']}: runbook_url {url!r}, expected {want!r}")
    elif r["alert"].lower() not in slugs:
        errors.append(f"{r['alert']}: docs/runbooks.md has no section `## {r['alert']}`")
cms = [d for d in kind("ConfigMap") if d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
if len(cms) != 1:
    errors.append("expected one ConfigMap labelled grafana_dashboard=1")
else:
    board = json.loads(cms[0]["data"]["multivac.json"])
    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))
    for p in panels(board["panels"]):
        if p["type"] != "row" and not all(t.get("expr") for t in p.get("targets") or [{}]):
            errors.append(f"dashboard panel {p.get('title')!r} has no query")
if errors:
    sys.exit("\n".join(errors))
print(f"{len(rules)} alerts, each with its runbook section; dashboard and monitors as expected")
PY
}
check "monitoring kit: monitors, alerts with runbooks, dashboard JSON" monitoring_kit

# --- kustomize --------------------------------------------------------------------
kustomize_default() { "$kubectl" kustomize config/default > "$work/kustomize.yaml"; }
check "kubectl kustomize config/default" kustomize_default

# compare_rbac: the chart's and kustomize's ClusterRole and Role rules are the
# same set, and neither grants a wildcard.
compare_rbac() {
  "$py" - "$work/helm.yaml" "$work/kustomize.yaml" <<'PY'
import sys, yaml, json

def rules(path):
    out = {}
    for doc in yaml.safe_load_all(open(path)):
        if doc and doc.get("kind") in ("ClusterRole", "Role"):
            rs = []
            for r in doc.get("rules", []):
                for k, v in r.items():
                    if any(x == "*" for x in v):
                        sys.exit(f"{path}: {doc['kind']} {doc['metadata']['name']} has a wildcard in {k}: {r}")
                rs.append(json.dumps({k: sorted(v) for k, v in sorted(r.items())}, sort_keys=True))
            out[doc["kind"]] = sorted(rs)
    return out

helm, kust = rules(sys.argv[1]), rules(sys.argv[2])
if set(helm) != {"ClusterRole", "Role"}:
    sys.exit(f"the chart renders {sorted(helm)}, expected a ClusterRole and a Role")
if helm != kust:
    for kind in sorted(set(helm) | set(kust)):
        a, b = set(helm.get(kind, [])), set(kust.get(kind, []))
        for r in sorted(a - b): print(f"{kind}: only in the chart:     {r}")
        for r in sorted(b - a): print(f"{kind}: only in kustomize: {r}")
    sys.exit("the chart's and config/rbac's rules differ")
print(json.dumps(helm, indent=1))
PY
}
check "RBAC rules: chart == kustomize, no wildcards" compare_rbac

# compare_rbac_namespaced: with watchNamespace the chart grants the same rules
# as a Role in that namespace and nothing cluster-wide.
compare_rbac_namespaced() {
  render --set watchNamespace=team-a > "$work/helm-ns.yaml"
  "$py" - "$work/helm.yaml" "$work/helm-ns.yaml" <<'PY'
import sys, yaml
docs = lambda p: [d for d in yaml.safe_load_all(open(p)) if d]
cluster = [d for d in docs(sys.argv[1]) if d["kind"] == "ClusterRole"][0]["rules"]
ns = docs(sys.argv[2])
if any(d["kind"].startswith("Cluster") for d in ns):
    sys.exit("watchNamespace still renders cluster-scoped RBAC")
roles = [d for d in ns if d["kind"] == "Role" and d["metadata"]["namespace"] == "team-a"]
if len(roles) != 1 or roles[0]["rules"] != cluster:
    sys.exit(f"expected one Role in team-a with the ClusterRole's rules, got {roles}")
binds = [d for d in ns if d["kind"] == "RoleBinding" and d["metadata"]["namespace"] == "team-a"]
if len(binds) != 1 or binds[0]["roleRef"]["name"] != roles[0]["metadata"]["name"]:
    sys.exit(f"expected one RoleBinding in team-a to that Role, got {binds}")
PY
}
check "RBAC with watchNamespace: a Role there, nothing cluster-wide" compare_rbac_namespaced

# compare_pod: the operator container of both install paths runs the same way
# (args, env, probes, security) so the two paths cannot drift.
compare_pod() {
  "$py" - "$work/helm.yaml" "$work/kustomize.yaml" <<'PY'
import sys, yaml
def pod(path):
    for doc in yaml.safe_load_all(open(path)):
        if doc and doc.get("kind") == "Deployment":
            spec = doc["spec"]["template"]["spec"]
            c = spec["containers"][0]
            return {"replicas": doc["spec"]["replicas"], "podSecurity": spec["securityContext"],
                    **{k: c.get(k) for k in ("args", "env", "ports", "livenessProbe", "readinessProbe", "securityContext", "resources")}}
    sys.exit(f"{path}: no Deployment")
a, b = pod(sys.argv[1]), pod(sys.argv[2])
diff = [k for k in a if a[k] != b[k]]
if diff:
    for k in diff: print(f"{k}:\n  chart:     {a[k]}\n  kustomize: {b[k]}")
    sys.exit("the operator Deployment differs between the chart and config/manager")
PY
}
check "operator Deployment: chart == kustomize" compare_pod

# --- one version everywhere -------------------------------------------------------
# A release tag vX.Y.Z must find X.Y.Z in Cargo.toml and vX.Y.Z as the chart's
# version and appVersion, the default operator and app images' tags (chart
# and kustomize), the Dockerfiles' default VERSION label, the CHANGELOG's
# latest release and the README's install command; the pipeline pushes the
# images and the chart under the tag itself. In a tag pipeline (CI_COMMIT_TAG)
# the tag must be that version.
one_version() {
  "$py" - "$work/helm.yaml" "$work/kustomize.yaml" <<'PY'
import glob, os, re, sys, yaml
errors = []
cargo = re.search(r'\[workspace\.package\][^\[]*?\nversion = "([^"]+)"', open("Cargo.toml").read())
if not cargo:
    sys.exit("Cargo.toml: no version in [workspace.package]")
plain = cargo.group(1)
want = "v" + plain
def same(where, got):
    if got != want:
        errors.append(f"{where}: {got!r}, expected {want!r} (Cargo.toml's version {plain})")
chart = yaml.safe_load(open("charts/multivac-operator/Chart.yaml"))
same("Chart.yaml version", str(chart["version"]))
same("Chart.yaml appVersion", str(chart["appVersion"]))
repo = "registry.gitlab.com/multivac/multivac"
for path, source in ((sys.argv[1], "the chart"), (sys.argv[2], "kustomize")):
    dep = next(d for d in yaml.safe_load_all(open(path)) if d and d["kind"] == "Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    image, _, tag = c["image"].rpartition(":")
    if image != f"{repo}/multivac-operator":
        errors.append(f"{source}: operator image {c['image']!r} is not {repo}/multivac-operator")
    same(f"{source}: operator image tag", tag)
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    app = env.get("MULTIVAC_OPERATOR_DEFAULT_APP_IMAGE") or ""
    image, _, tag = app.rpartition(":")
    if image != f"{repo}/multivac":
        errors.append(f"{source}: MULTIVAC_OPERATOR_DEFAULT_APP_IMAGE {app!r} is not {repo}/multivac:<tag>")
    same(f"{source}: default app image tag", tag)
for df in ("Dockerfile.app", "Dockerfile.operator"):
    m = re.search(r"^ARG VERSION=(\S+)$", open(df).read(), re.M)
    same(f"{df} ARG VERSION", m.group(1) if m else None)
releases = re.findall(r"^## \[([^\]]+)\]", open("CHANGELOG.md").read(), re.M)
released = [r for r in releases if r.lower() != "unreleased"]
if not releases or releases[0].lower() != "unreleased":
    errors.append("CHANGELOG.md: the first section must be ## [Unreleased]")
if not released or released[0] != plain:
    errors.append(f"CHANGELOG.md: latest release {released[:1]}, expected [{plain}]")
installs = []
for doc in ["README.md"] + sorted(glob.glob("docs/*.md")):
    for line in open(doc):
        if re.search(r"helm (install|upgrade --install) \S+ oci://", line):
            installs.append((doc, line.strip()))
if not any(d == "README.md" for d, _ in installs):
    errors.append("README.md: no `helm install ... oci://...` line")
for doc, line in installs:
    if f"oci://{repo}/charts/multivac-operator" not in line or f"--version {want}" not in line:
        errors.append(f"{doc}: `{line}` must install oci://{repo}/charts/multivac-operator --version {want}")
ci = yaml.safe_load(open(".gitlab-ci.yml"))
script = lambda job: "\n".join(ci[job]["script"])
for var in ("OPERATOR_IMAGE", "APP_IMAGE"):
    if f'"docker://${var}:$CI_COMMIT_SHA" "docker://${var}:$CI_COMMIT_TAG"' not in script("release:images"):
        errors.append(f"release:images must copy ${var}:$CI_COMMIT_SHA to ${var}:$CI_COMMIT_TAG")
chart_job = script("release:chart")
if "--version" in chart_job or "--app-version" in chart_job:
    errors.append("release:chart must package the chart as committed (no --version/--app-version)")
if 'helm push "dist/multivac-operator-$CI_COMMIT_TAG.tgz" "$CHART_REPOSITORY"' not in chart_job:
    errors.append("release:chart must helm push dist/multivac-operator-$CI_COMMIT_TAG.tgz to $CHART_REPOSITORY")
if ci["variables"].get("CHART_REPOSITORY") != "oci://$CI_REGISTRY_IMAGE/charts":
    errors.append("CHART_REPOSITORY must be oci://$CI_REGISTRY_IMAGE/charts (what the README installs)")
tag = os.environ.get("CI_COMMIT_TAG")
if tag and tag != want:
    errors.append(f"this pipeline's tag {tag} is not the version {want}: bump Cargo.toml, the chart, "
                  "config/manager, the Dockerfiles and CHANGELOG.md together, then tag")
if errors:
    sys.exit("\n".join(errors))
print(f"version {want} everywhere ({len(installs)} install commands)")
PY
}
check "one version everywhere (Cargo, chart, images, kustomize, Dockerfiles, CHANGELOG, README, pipeline)" one_version

# --- the chart's README ---------------------------------------------------------------
check "charts/multivac-operator/README.md values table matches values.yaml" bash hack/chart-docs.sh --check

# --- GitLab pipeline ----------------------------------------------------------------
# gitlab-ci-local reads the git repository it runs in and writes a state folder
# there, so it runs on a throwaway repository holding only the pipeline file.
gitlab_ci() {
  local repo="$work/gitlab"
  rm -rf "$repo"; mkdir -p "$repo"; cp .gitlab-ci.yml "$repo/"
  git -C "$repo" init -q
  git -C "$repo" add .gitlab-ci.yml
  git -C "$repo" -c user.name=lint -c user.email=lint@localhost commit -qm pipeline
  # The project's remote (never contacted), so the CI_PROJECT_* variables are real.
  git -C "$repo" remote add origin https://gitlab.com/multivac/multivac.git
  git -C "$repo" update-ref refs/remotes/origin/main HEAD
  git -C "$repo" symbolic-ref refs/remotes/origin/HEAD refs/remotes/origin/main
  # Setting CI_* variables by hand is the point here, not a mistake.
  (cd "$repo" && gitlab-ci-local --ignore-predefined-vars CI_PIPELINE_SOURCE,CI_COMMIT_TAG "$@")
}
# pipeline_jobs WANT ARGS...: the pipeline for ARGS has exactly the jobs WANT.
pipeline_jobs() {
  local want="$1"; shift
  gitlab_ci --list-csv "$@" > "$work/jobs.csv" || return 1
  local got
  got="$(sed -n '/^name;/,$p' "$work/jobs.csv" | sed 1d | cut -d';' -f1 | sort | tr '\n' ' ')"
  [ "$got" = "$want" ] || { echo "jobs: got [$got], want [$want]"; return 1; }
}
check "gitlab-ci-local: branch pipeline validates" pipeline_jobs "clippy fmt image:app image:operator lint sbom:app sbom:operator test "
check "gitlab-ci-local: merge request pipeline" pipeline_jobs "clippy fmt image:app image:operator lint sbom:app sbom:operator test " --variable CI_PIPELINE_SOURCE=merge_request_event
check "gitlab-ci-local: tag pipeline adds the release" pipeline_jobs "clippy fmt image:app image:operator lint release:chart release:images sbom:app sbom:operator test " --variable CI_COMMIT_TAG=v0.1.0
check "gitlab-ci-local: needs chain valid on tags" gitlab_ci --validate-dependency-chain --variable CI_COMMIT_TAG=v0.1.0

check_summary lint
