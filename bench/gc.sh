#!/usr/bin/env bash
# Garbage collection, marina against CNCF Distribution 2.8.2, on the same data set: IMAGES
# images of a config and 9 layers each (10 blobs an image) in 20 repositories, half of the
# manifests deleted, so half the blobs are garbage.
#
#   bench/gc.sh [--storage filesystem|s3] [--images N]      (default filesystem, 2000)
#
# - Distribution: stopped (its GC is offline), then `docker-registry garbage-collect
#   --delete-untagged`, timed.
# - marina: serving, `marina gc` asks it to collect (online), timed; no grace, so that it frees
#   the same garbage (gc.grace 1s, and the data is older than that).
# - p99 of manifest GETs on marina (wrk, 8 connections), in three rounds: without GC, and while
#   one `marina gc` run sweeps a fresh load of garbage, over a window as long as the first run.
# With --storage s3 both use the bucket in S3_* / AWS_* (Garage: region garage, path style),
# under prefixes of their own. Output goes to bench/out/gc-<time>/ (git-ignored).
set -euo pipefail
export LC_ALL=C

STORAGE=filesystem IMAGES=2000 ARGS="$*"
while [ $# -gt 0 ]; do
    case "$1" in
    --storage) STORAGE=$2; shift 2 ;;
    --images) IMAGES=$2; shift 2 ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "gc.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MARINA_BIN=${MARINA_BIN:-$ROOT/target/release/marina}
DIST_BIN=${DIST_BIN:-/usr/bin/docker-registry}
for tool in "$MARINA_BIN" "$DIST_BIN" wrk python3; do
    command -v "$tool" >/dev/null || { echo "gc.sh: $tool is missing" >&2; exit 2; }
done
OUT=$ROOT/bench/out/gc-$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
RUN_ID=$RANDOM$RANDOM

PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

dist_storage() {
    if [ "$STORAGE" = s3 ]; then
        cat <<EOF
  s3:
    accesskey: $AWS_ACCESS_KEY_ID
    secretkey: $AWS_SECRET_ACCESS_KEY
    region: ${S3_REGION:-garage}
    regionendpoint: $S3_ENDPOINT
    bucket: $S3_BUCKET
    rootdirectory: /gcbench-dist-$RUN_ID
    secure: false
    v4auth: true
  redirect:
    disable: true
EOF
    else
        printf '  filesystem:\n    rootdirectory: %s\n' "$OUT/distribution/data"
    fi
}

echo "# garbage collection: marina vs CNCF Distribution"
echo "date: $(date -u '+%F %T UTC'), nproc $(nproc), storage $STORAGE, $IMAGES images, command: bench/gc.sh $ARGS"
echo "marina: $("$MARINA_BIN" --version | head -1); distribution: $("$DIST_BIN" --version 2>&1 | head -1)"
echo

# Distribution: load while serving, then stop it and collect offline.
dist_port=$(free_port)
mkdir -p "$OUT/distribution"
cat >"$OUT/distribution/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
$(dist_storage)
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$dist_port
EOF
env -u AWS_CA_BUNDLE "$DIST_BIN" serve "$OUT/distribution/config.yml" >"$OUT/distribution/server.log" 2>&1 &
DIST_PID=$!; PIDS+=("$DIST_PID")
wait_port "$dist_port"
start=$(date +%s.%N)
echo "distribution load: $(python3 "$ROOT/bench/gc_load.py" "http://127.0.0.1:$dist_port" "$IMAGES" 9) in $(elapsed "$start") s"
kill "$DIST_PID"; wait "$DIST_PID" 2>/dev/null || true
start=$(date +%s.%N)
env -u AWS_CA_BUNDLE "$DIST_BIN" garbage-collect --delete-untagged "$OUT/distribution/config.yml" >"$OUT/distribution/gc.log" 2>&1
DIST_GC=$(elapsed "$start")
echo "distribution garbage-collect --delete-untagged (offline): $DIST_GC s; $(grep -c 'blob eligible for deletion' "$OUT/distribution/gc.log") blobs eligible"

# marina: load, then collect online.
marina_port=$(free_port)
mkdir -p "$OUT/marina"
marina_env=()
if [ "$STORAGE" = s3 ]; then
    marina_env=(STORAGE_DRIVER=s3 "S3_PREFIX=gcbench-marina-$RUN_ID")
else
    marina_env=(-u S3_BUCKET STORAGE_DRIVER=filesystem "STORAGE_PATH=$OUT/marina/data")
fi
marina_args=(--listen "127.0.0.1:$marina_port" --gc-interval 0 --gc-grace 1s --log-level warn)
env "${marina_env[@]}" "$MARINA_BIN" "${marina_args[@]}" >"$OUT/marina/server.log" 2>&1 &
PIDS+=("$!")
wait_port "$marina_port"
start=$(date +%s.%N)
loaded=$(python3 "$ROOT/bench/gc_load.py" "http://127.0.0.1:$marina_port" "$IMAGES" 9)
echo "marina load: $loaded in $(elapsed "$start") s"
manifest_url="http://127.0.0.1:$marina_port/v2/bench/r0/manifests/t0"
sleep 1.5

marina_gc() { env "${marina_env[@]}" "$MARINA_BIN" gc "${marina_args[@]}"; }
start=$(date +%s.%N)
marina_gc >"$OUT/marina/gc.json"
MARINA_GC=$(elapsed "$start")
echo "marina gc (online, the server keeps serving): $MARINA_GC s; $(cat "$OUT/marina/gc.json")"
awk -v m="$MARINA_GC" -v d="$DIST_GC" 'BEGIN { printf "marina takes %.3f of Distribution'"'"'s time (target: under 0.2)\n", m / d }'

# p99 of manifest GETs over WINDOW seconds (wrk, 2 threads, 8 connections): without GC, and
# while one `marina gc` run sweeps fresh garbage (a new load of IMAGES images, half deleted,
# before each round). The window is as long as the first run took, so that it covers the run.
WINDOW=$(awk -v s="$MARINA_GC" 'BEGIN { w = int(s); print (w < 1 ? 1 : w) }')
p99() {
    wrk -t2 -c8 -d"${WINDOW}s" --latency -H "Accept: application/vnd.oci.image.manifest.v1+json" "$manifest_url" \
        >"$OUT/marina/wrk-$1.txt"
    awk '$1 == "99%" { print $2 }' "$OUT/marina/wrk-$1.txt"
}
to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) printf "%.3f", v / 1000; else if (v ~ /ms$/) printf "%.3f", v + 0; else printf "%.3f", v * 1000 }'; }
echo
for round in 1 2 3; do
    python3 "$ROOT/bench/gc_load.py" "http://127.0.0.1:$marina_port" "$IMAGES" 9 >/dev/null
    # Let the load's writeback finish, so that both windows see the same quiet disk.
    sync
    sleep 3
    idle=$(p99 "idle-$round")
    marina_gc >"$OUT/marina/gc-under-load-$round.json" &
    gc_pid=$!
    during=$(p99 "gc-$round")
    wait "$gc_pid"
    took=$(sed 's/.*"duration_ms":\([0-9]*\).*/\1/' "$OUT/marina/gc-under-load-$round.json")
    awk -v r="$round" -v i="$idle" -v d="$during" -v a="$(to_ms "$idle")" -v b="$(to_ms "$during")" -v t="$took" -v w="$WINDOW" \
        'BEGIN { printf "round %d: manifest GET p99 without GC %s, during a %d ms GC run (%d s window) %s: ratio %.2f (target: at most 2)\n", r, i, t, w, d, b / a }'
done
grep -H "Requests/sec" "$OUT"/marina/wrk-*.txt | sed "s|$OUT/marina/||"
echo "(raw output in $OUT)"
