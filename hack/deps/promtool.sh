#!/usr/bin/env bash
# Builds promtool (Prometheus' rule and metrics checker) once into the cache and
# prints the path of its binary on stdout; progress goes to stderr, so callers
# capture it: promtool="$(bash hack/deps/promtool.sh)".
#
# Built from the pinned Prometheus Go module with `go install module@version`,
# which builds exactly that release's go.mod/go.sum (checked against the Go
# checksum database). `remove_all_sd` leaves out the service-discovery plugins
# promtool does not need for `check rules`, `test rules` and `check metrics`
# (a third of the build). A stamp of the version, the tags and the Go toolchain
# makes a change of any of them rebuild.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/../lib.sh"

# Prometheus v3.x is published to the Go module proxy as v0.3xx.y.
PROMETHEUS_MODULE_VERSION="v0.316.0"
tags="remove_all_sd"

dir="$MULTIVAC_CACHE/tools/promtool-$PROMETHEUS_MODULE_VERSION"
bin="$dir/promtool"
want="$PROMETHEUS_MODULE_VERSION $tags $(go env GOVERSION 2>/dev/null || true)"
built() { [ -x "$bin" ] && [ "$(cat "$bin.stamp" 2>/dev/null)" = "$want" ]; }

if ! built; then
  command -v go >/dev/null 2>&1 || die "go is not installed: promtool is built from its Go module (install Go >= 1.26)"
  mkdir -p "$dir"
  # The flock keeps two concurrent callers (lint, tests) from building twice.
  (
    flock 9
    if ! built; then
      log "building promtool (github.com/prometheus/prometheus $PROMETHEUS_MODULE_VERSION) into $dir (a big build, once)"
      start=$(date +%s)
      tmp="$(mktemp -d "$dir/build.XXXXXX")"
      GOFLAGS="" GOBIN="$tmp" CGO_ENABLED=0 nice -n 19 go install -trimpath -tags "$tags" -ldflags="-s -w" \
        "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_MODULE_VERSION" >&2 \
        || { rm -rf "$tmp"; die "building promtool failed (see above); run \`bash hack/deps/promtool.sh\` again"; }
      mv "$tmp/promtool" "$bin"
      rmdir "$tmp"
      echo "$want" > "$bin.stamp"
      log "built promtool in $(( $(date +%s) - start )) s"
    fi
  ) 9>"$dir/.lock"
fi

"$bin" --version >/dev/null 2>&1 || die "$bin does not run; delete $dir and run this script again"
echo "$bin"
