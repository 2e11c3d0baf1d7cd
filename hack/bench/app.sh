#!/usr/bin/env bash
# Benchmarks the app on this machine and prints the figures:
#   - raw `redis-benchmark` XADD rate on the Redis used (the ceiling),
#   - POST /multivac/data requests/s with p50/p99 at 64 concurrent connections (wrk),
#     on a Redis without persistence, then, in the same run, on Redis with its
#     append-only file fsynced `everysec` and `always` (the operator's choices),
#   - one worker's data/s against FerretDB (SQLite backend),
#   - one worker's peak resident memory (VmHWM) on a backlog of a full batch
#     (512) of maximum-size data (64 KiB, words of a 40,000-word vocabulary),
#     default settings (it reads and stores them MULTIVAC_BATCH_BYTES, 4 MiB, at
#     a time), against the default worker memory limit (256 MiB).
# Everything runs on loopback, on free ports, and stops at the end.
# Knobs: BENCH_SECONDS (POST duration, default 10), BENCH_WORKER_DATA (default 30000).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$MULTIVAC_ROOT"

seconds="${BENCH_SECONDS:-10}"
worker_data="${BENCH_WORKER_DATA:-30000}"
conns=64

redis_server="$(bash hack/deps/redis.sh)"
ferretdb="$(bash hack/deps/ferretdb.sh)"
command -v wrk >/dev/null 2>&1 || apt_install wrk
command -v redis-benchmark >/dev/null 2>&1 || apt_install redis-tools
log "building multivac (release)"
cargo build --release --locked -p multivac --quiet
target="${CARGO_TARGET_DIR:-$MULTIVAC_ROOT/target}"
multivac="$target/release/multivac"

work="$(mktemp -d /tmp/multivac-bench.XXXXXX)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

wait_port() { # wait_port PORT NAME
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  die "$2 did not listen on 127.0.0.1:$1; see $work/*.log"
}

redis_port="$(free_port)"
"$redis_server" --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  >"$work/redis.log" 2>&1 &
pids+=($!)
wait_port "$redis_port" redis-server

mongo_port="$(free_port)"
mkdir -p "$work/ferretdb"
"$ferretdb" --handler=sqlite --sqlite-url="file:$work/ferretdb/" --state-dir="$work/ferretdb" \
  --listen-addr="127.0.0.1:$mongo_port" --debug-addr=127.0.0.1:0 --telemetry=disable --log-level=warn \
  >"$work/ferretdb.log" 2>&1 &
pids+=($!)
wait_port "$mongo_port" FerretDB

export MULTIVAC_REDIS_URL="redis://127.0.0.1:$redis_port"
export MULTIVAC_MONGODB_URI="mongodb://127.0.0.1:$mongo_port"
export RUST_LOG=warn

# Data: 12 words each from a 5,000-word vocabulary, so concepts saturate as in real use.
python3 - "$work" "$worker_data" <<'PY'
import random, sys
work, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(42)
vocab = ["w%d" % i for i in range(5000)]
def sentence(): return " ".join(rng.choice(vocab) for _ in range(12))
with open(f"{work}/post.lua", "w") as f:
    f.write('local bodies = {\n')
    for _ in range(200):
        f.write('  "data=%s",\n' % sentence().replace(" ", "+"))
    f.write('}\nlocal i = 0\n')
    f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n')
    f.write('request = function()\n  i = i % #bodies + 1\n  return wrk.format(nil, nil, nil, bodies[i])\nend\n')
with open(f"{work}/load.redis", "w") as f:
    for _ in range(n):
        s = sentence()
        f.write("*5\r\n$4\r\nXADD\r\n$13\r\nmultivac:data\r\n$1\r\n*\r\n$4\r\ndata\r\n$%d\r\n%s\r\n" % (len(s), s))
PY
sample="$(python3 -c 'import random; r=random.Random(1); print(" ".join("w%d" % r.randrange(5000) for _ in range(12)))')"

log "raw redis-benchmark XADD, $conns connections"
raw_csv="$(redis-benchmark -h 127.0.0.1 -p "$redis_port" -c "$conns" -n 300000 --csv \
  XADD multivac:bench '*' data "$sample")"
raw_rps="$(printf '%s\n' "$raw_csv" | awk -F'","' 'NR==2 {print $2+0}')"
raw_p50="$(printf '%s\n' "$raw_csv" | awk -F'","' 'NR==2 {print $5+0}')"
raw_p99="$(printf '%s\n' "$raw_csv" | awk -F'","' 'NR==2 {print $7+0}')"
redis-cli -p "$redis_port" DEL multivac:bench >/dev/null

log "POST /multivac/data with wrk, $conns connections, ${seconds}s"
http_port="$(free_port)"
# The internal port on the API's address: one listener, and no fixed 9090
# that a second server (below) or another program would collide on.
MULTIVAC_BIND="127.0.0.1:$http_port" MULTIVAC_METRICS_BIND="127.0.0.1:$http_port" "$multivac" server >"$work/server.log" 2>&1 &
pids+=($!)
wait_port "$http_port" "multivac server"
wrk -t2 -c"$conns" -d1s -s "$work/post.lua" "http://127.0.0.1:$http_port/multivac/data" >/dev/null # warm-up
wrk -t2 -c"$conns" -d"${seconds}s" --latency -s "$work/post.lua" \
  "http://127.0.0.1:$http_port/multivac/data" >"$work/wrk.txt"
post_rps="$(awk '/^Requests\/sec:/ {print $2}' "$work/wrk.txt")"
post_p50="$(awk '$1 == "50%" {print $2}' "$work/wrk.txt")"
post_p99="$(awk '$1 == "99%" {print $2}' "$work/wrk.txt")"
non2xx="$(awk '/Non-2xx/ {print $NF}' "$work/wrk.txt")"
[ -z "$non2xx" ] || die "wrk saw $non2xx non-2xx answers; see $work/wrk.txt and $work/server.log"

# The same POST load on a Redis that persists every write in its append-only
# file, fsynced once a second or before every answer (spec.redis.managed.appendfsync).
post_rps_with() { # post_rps_with APPENDFSYNC: writes requests/s to $work/rps-APPENDFSYNC
  local mode="$1" port http
  port="$(free_port)"
  mkdir -p "$work/aof-$mode"
  "$redis_server" --port "$port" --bind 127.0.0.1 --save '' --dir "$work/aof-$mode" \
    --appendonly yes --appendfsync "$mode" >"$work/redis-$mode.log" 2>&1 &
  pids+=($!)
  wait_port "$port" "redis-server ($mode)"
  http="$(free_port)"
  MULTIVAC_REDIS_URL="redis://127.0.0.1:$port" MULTIVAC_BIND="127.0.0.1:$http" \
    MULTIVAC_METRICS_BIND="127.0.0.1:$http" "$multivac" server \
    >"$work/server-$mode.log" 2>&1 &
  pids+=($!)
  wait_port "$http" "multivac server ($mode)"
  wrk -t2 -c"$conns" -d1s -s "$work/post.lua" "http://127.0.0.1:$http/multivac/data" >/dev/null
  wrk -t2 -c"$conns" -d"${seconds}s" -s "$work/post.lua" "http://127.0.0.1:$http/multivac/data" \
    >"$work/wrk-$mode.txt"
  ! grep -q Non-2xx "$work/wrk-$mode.txt" || die "non-2xx answers with appendfsync $mode; see $work/wrk-$mode.txt"
  awk '/^Requests\/sec:/ {print $2}' "$work/wrk-$mode.txt" >"$work/rps-$mode"
}
log "POST /multivac/data on Redis with AOF, appendfsync everysec then always, ${seconds}s each"
post_rps_with everysec
post_rps_with always
everysec_rps="$(cat "$work/rps-everysec")"
always_rps="$(cat "$work/rps-always")"

# queued FILE NAME: a fresh stream and group holding the XADDs of FILE, and a
# worker named NAME started on it; sets $worker_pid, $worker_port and
# $worker_start (when the worker started).
queued() {
  redis-cli -p "$redis_port" DEL multivac:data >/dev/null
  redis-cli -p "$redis_port" XGROUP CREATE multivac:data multivac-workers 0 MKSTREAM >/dev/null
  redis-cli -p "$redis_port" --pipe <"$1" >/dev/null
  worker_port="$(free_port)"
  worker_start="$(date +%s.%N)"
  MULTIVAC_METRICS_BIND="127.0.0.1:$worker_port" MULTIVAC_CONSUMER_NAME="$2" "$multivac" worker \
    >"$work/worker-$2.log" 2>&1 &
  worker_pid=$!
  pids+=("$worker_pid")
}

# processed N: waits until the worker on $worker_port has processed N data.
processed() {
  local count=0 deadline=$(( $(date +%s) + 300 ))
  while [ "$count" -lt "$1" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || die "the worker processed only $count of $1 in 300 s; see $work/worker-*.log"
    sleep 0.05
    count="$(curl -fs "http://127.0.0.1:$worker_port/metrics" 2>/dev/null \
      | awk '/^multivac_worker_processed_total/ {print $2}')" || true
    count="${count:-0}"
  done
}

log "one worker, $worker_data data"
queued "$work/load.redis" bench
processed "$worker_data"
start="$worker_start"
end="$(date +%s.%N)"

log "one worker's peak memory on a full batch of 64 KiB data"
kill "$worker_pid" && wait "$worker_pid" || true
python3 - "$work" <<'PY'
import random, sys
work = sys.argv[1]
rng = random.Random(40000)
letters = "abcdefghijklmnopqrstuvwxyz"
vocab = set()
while len(vocab) < 40000:
    vocab.add("".join(rng.choice(letters) for _ in range(rng.randint(3, 12))))
vocab = sorted(vocab)
def datum(size):
    words, n = [], -1
    while True:
        w = rng.choice(vocab)
        if n + 1 + len(w) > size:
            break
        words.append(w)
        n += 1 + len(w)
    s = " ".join(words)
    return s + " " * (size - len(s))
with open(f"{work}/large.redis", "w") as f:
    for _ in range(512):
        s = datum(65536)
        f.write("*5\r\n$4\r\nXADD\r\n$13\r\nmultivac:data\r\n$1\r\n*\r\n$4\r\ndata\r\n$%d\r\n%s\r\n" % (len(s), s))
PY
queued "$work/large.redis" memory
processed 512
peak_kib="$(awk '/^VmHWM:/ {print $2}' "/proc/$worker_pid/status")"

python3 - "$raw_rps" "$raw_p50" "$raw_p99" "$post_rps" "$post_p50" "$post_p99" "$worker_data" "$start" "$end" \
  "$everysec_rps" "$always_rps" "$peak_kib" <<'PY'
import sys
raw, rp50, rp99, post, p50, p99, n, start, end, everysec, always, peak_kib = sys.argv[1:]
raw, post, everysec, always = float(raw), float(post), float(everysec), float(always)
rate = int(n) / (float(end) - float(start))
peak = int(peak_kib) / 1024
print()
print("MultiVAC benchmark (this machine, loopback, 64 concurrent connections)")
print(f"  raw redis-benchmark XADD:  {raw:10.0f} req/s   p50 {rp50} ms  p99 {rp99} ms")
print(f"  POST /multivac/data (wrk): {post:10.0f} req/s   p50 {p50}  p99 {p99}  (Redis without persistence)")
print(f"  POST / raw XADD:           {100 * post / raw:9.1f} %    (target >= 50 %)")
print(f"  POST, AOF everysec:        {everysec:10.0f} req/s")
print(f"  POST, AOF always:          {always:10.0f} req/s   ({100 * always / everysec:.1f} % of everysec, same run)")
print(f"  one worker, FerretDB:      {rate:10.0f} data/s  ({n} data; target >= 2000)")
print(f"  worker peak memory:        {peak:10.1f} MiB     (512 x 64 KiB data of 40,000 words, default settings; {100 * peak / 256:.1f} % of 256 MiB, target < 60 %)")
PY
