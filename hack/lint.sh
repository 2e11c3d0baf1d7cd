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
#           Helm chart and its values schema, the chart's RBAC against
#           kustomize's, and the GitLab pipeline file. Needs `bash hack/cluster.sh
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
  check "cargo clippy -D warnings" cargo clippy --workspace --all-targets --locked -- -D warnings
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

# --- Helm chart -------------------------------------------------------------------
check "helm lint --strict" "$helm" lint --strict "$chart"
check "helm lint --strict with the ServiceMonitor" "$helm" lint --strict "$chart" --set serviceMonitor.enabled=true
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
check "gitlab-ci-local: branch pipeline validates" pipeline_jobs "clippy fmt image:app image:operator lint test "
check "gitlab-ci-local: merge request pipeline" pipeline_jobs "clippy fmt image:app image:operator lint test " --variable CI_PIPELINE_SOURCE=merge_request_event
check "gitlab-ci-local: tag pipeline adds the release" pipeline_jobs "clippy fmt image:app image:operator lint release:chart release:images test " --variable CI_COMMIT_TAG=v0.1.0
check "gitlab-ci-local: needs chain valid on tags" gitlab_ci --validate-dependency-chain --variable CI_COMMIT_TAG=v0.1.0

check_summary lint
