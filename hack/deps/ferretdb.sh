#!/usr/bin/env bash
# Builds FerretDB (a MongoDB-compatible server on SQLite) once into the cache and
# prints the path of its binary on stdout; every log line goes to stderr so the
# caller can capture the path: MULTIVAC_TEST_FERRETDB="$(bash hack/deps/ferretdb.sh)".
# There is no MongoDB server package in this machine's registries; FerretDB is
# built from the Go module proxy, the only source we may fetch it from.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

version="v1.24.2"
dir="$MULTIVAC_CACHE/ferretdb/$version"
bin="$dir/bin/ferretdb"

if [ ! -x "$bin" ]; then
  command -v go >/dev/null 2>&1 || apt_install golang-go
  command -v go >/dev/null 2>&1 || die "go is not installed; install Go >= 1.22 (apt-get install golang-go)"
  log "building FerretDB $version into $dir (takes a few minutes once)"
  mkdir -p "$dir/bin"
  # FerretDB embeds build/version/version.txt, which its module zip lacks (it is
  # generated from git), so a plain `go install` builds a binary that panics at
  # start. Download the module, copy it, write that file and build the copy.
  # The flock keeps two concurrent callers (tests, demo) from building twice.
  (
    flock 9
    if [ ! -x "$bin" ]; then
      src="$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "github.com/FerretDB/FerretDB@$version" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
      [ -d "$src" ] || die "go mod download github.com/FerretDB/FerretDB@$version gave no source directory"
      rm -rf "$dir/src"
      cp -r "$src" "$dir/src"
      chmod -R u+w "$dir/src"
      echo "$version" > "$dir/src/build/version/version.txt"
      echo "multivac-cache" > "$dir/src/build/version/package.txt"
      (cd "$dir/src" && go build -trimpath -o "$dir/bin/ferretdb.tmp" ./cmd/ferretdb) >&2
      mv "$dir/bin/ferretdb.tmp" "$bin"
      rm -rf "$dir/src"
    fi
  ) 9>"$dir/.lock"
fi

"$bin" --version >/dev/null 2>&1 || die "$bin does not run; delete $dir and run this script again"
echo "$bin"
