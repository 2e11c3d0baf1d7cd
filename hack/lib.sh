# shellcheck shell=bash
# Shared helpers for the scripts under hack/. Source it; do not run it.
# Every heavy build lands in a cache outside the tree so a fresh clone reuses it.

MULTIVAC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MULTIVAC_CACHE="${MULTIVAC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/multivac}"
export MULTIVAC_ROOT MULTIVAC_CACHE

# The cargo features of every build that runs the tests against real servers:
# the app's fault suite (which implies its integration tests) and the
# operator's integration tests. clippy, `make test`, `make faults` and the
# e2e's binaries all use this one set, so they share one build.
export MULTIVAC_TEST_FEATURES="multivac/faults,multivac-operator/integration"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# apt_install PKG... installs Debian packages that are missing (needs root, as on CI).
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# free_port prints a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# --- Pass/fail bookkeeping of the check scripts ------------------------------
# hack/lint.sh, hack/cluster/acceptance.sh and hack/install-test.sh run every
# check even when an earlier one fails, then end with `<name>: N passed, M
# failed` and a non-zero status on any failure (check_summary).
CHECK_PASSED=0
CHECK_FAILED=0

# check NAME CMD...: runs CMD in this shell (so it may set variables), its
# output kept in a file and shown only on failure (the last CHECK_TAIL lines
# when that is set). CMD does not run as an `if` condition, so a `( set -e; ... )`
# inside it still stops at the first failing command.
check() {
  local name="$1"; shift
  local out rc errexit=0 t0=$SECONDS
  out="$(mktemp "${TMPDIR:-/tmp}/multivac-check.XXXXXX")"
  [[ $- == *e* ]] && errexit=1
  set +e
  "$@" >"$out" 2>&1
  rc=$?
  [ "$errexit" -eq 1 ] && set -e
  if [ "$rc" -eq 0 ]; then
    CHECK_PASSED=$((CHECK_PASSED + 1))
    printf 'ok    %s (%d s)\n' "$name" $((SECONDS - t0)) >&2
  else
    CHECK_FAILED=$((CHECK_FAILED + 1))
    printf 'FAIL  %s (%d s)\n' "$name" $((SECONDS - t0)) >&2
    if [ -n "${CHECK_TAIL:-}" ]; then tail -n "$CHECK_TAIL" "$out"; else cat "$out"; fi | sed 's/^/      /' >&2
  fi
  rm -f "$out"
  return 0
}

# refused CMD...: succeeds when CMD fails (bad input must be refused).
refused() { ! "$@"; }

# fails NAME CMD...: the check passes when CMD fails.
fails() { local name="$1"; shift; check "$name" refused "$@"; }

# check_summary NAME: prints the closing line; fails when any check failed.
check_summary() {
  echo "$1: $CHECK_PASSED passed, $CHECK_FAILED failed"
  [ "$CHECK_FAILED" -eq 0 ]
}
