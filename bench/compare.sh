#!/usr/bin/env bash
# Benchmarks marina against CNCF Distribution 2.8.2 on this machine: both serve fresh storage on
# the same disk, on loopback ports; `marina bench --url MARINA --compare DISTRIBUTION` runs three
# times (once with --quick); then the medians, ratios and targets, each server's idle and peak
# RSS, and the machine's own limits for the same data (sha256, durable writes, cached reads).
# The page workloads (tags-page, catalog-page) run in the first run only: setting up 100,000
# tags and 10,000 repositories on each registry takes most of the time, and each of their
# figures is already a percentile over hundreds of requests.
#
#   bench/compare.sh [--quick]
#
# MARINA_BIN (default target/release/marina) and DIST_BIN (default /usr/bin/docker-registry)
# choose the binaries. Everything is written under bench/out/compare-<time>/ (git-ignored).
set -euo pipefail
export LC_ALL=C

QUICK=0
for arg in "$@"; do
    case "$arg" in
    --quick) QUICK=1 ;;
    -h | --help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0
        ;;
    *)
        echo "compare.sh: unknown argument $arg (expected --quick)" >&2
        exit 2
        ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MARINA_BIN=${MARINA_BIN:-$ROOT/target/release/marina}
DIST_BIN=${DIST_BIN:-/usr/bin/docker-registry}

if [ "$QUICK" = 1 ]; then
    BIG_MIB=64 DURATION=2 TAGS=500 REPOS=1000 PAGE_REQUESTS=200 RUNS=1
else
    BIG_MIB=1024 DURATION=5 TAGS=5000,100000 REPOS=10000 PAGE_REQUESTS=300 RUNS=3
fi
# push-big runs on its own, so that a dd sample falls between it and push-chunked.
REST_WORKLOADS=push-chunked,pull-big,manifest-get,blob-get-small,small-push
PAGE_WORKLOADS=tags-page,catalog-page

for bin in "$MARINA_BIN" "$DIST_BIN"; do
    [ -x "$bin" ] || { echo "compare.sh: $bin is missing (build marina; apt-get install docker-registry)" >&2; exit 2; }
done
for tool in python3 openssl dd; do
    command -v "$tool" >/dev/null || { echo "compare.sh: $tool is missing" >&2; exit 2; }
done

OUT=$ROOT/bench/out/compare-$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$OUT"

MARINA_PID='' DIST_PID=''
stop_servers() {
    for pid in $MARINA_PID $DIST_PID; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    MARINA_PID='' DIST_PID=''
}
trap stop_servers EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until a TCP connection to the port succeeds (no HTTP request, so nothing is loaded).
wait_port() {
    for _ in $(seq 400); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "compare.sh: nothing listens on 127.0.0.1:$1" >&2
    return 1
}

# A field of /proc/PID/status (VmRSS, VmHWM) in KiB.
status_kib() {
    awk -v field="$2:" '$1 == field { print $2 }' "/proc/$1/status"
}

# Seconds taken by a command (its output discarded), as a decimal.
seconds() {
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null
    end=$(date +%s.%N)
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", e - s }'
}

mib_per_s() {
    awk -v mib="$1" -v s="$2" 'BEGIN { printf "%.1f", mib / s }'
}

echo "# marina vs CNCF Distribution"
echo
echo "date:         $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "uname:        $(uname -a)"
echo "nproc:        $(nproc)"
echo "cpu:          $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo "memory:       $(free -m | awk '/^Mem:/ { print $2 " MiB" }')"
echo "command:      bench/compare.sh $*"
echo "marina:       $MARINA_BIN ($("$MARINA_BIN" --version))"
echo "distribution: $DIST_BIN ($("$DIST_BIN" --version 2>&1 | head -1))"
echo "storage:      $OUT ($(stat -f -c %T "$OUT"), $(df --output=source "$OUT" | tail -1))"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews figures)"
echo "sizes:        big blob ${BIG_MIB} MiB, ${DURATION}s per rate, tags $TAGS, repositories $REPOS, $PAGE_REQUESTS page requests, $RUNS run(s), page workloads in run 1 only"
echo "servers:      marina --log-level warn; distribution log level warn, access log off"
if [ "$(stat -f -c %T "$OUT")" = tmpfs ]; then
    echo "WARNING: $OUT is on tmpfs: durable-write figures mean nothing there"
fi
echo

echo "## The machine's limits for ${BIG_MIB} MiB"
RANDOM_FILE=$ROOT/bench/out/random-${BIG_MIB}MiB.bin
if [ "$(stat -c %s "$RANDOM_FILE" 2>/dev/null || echo 0)" != $((BIG_MIB * 1024 * 1024)) ]; then
    head -c $((BIG_MIB * 1024 * 1024)) /dev/urandom >"$RANDOM_FILE"
fi
# This disk writes about twice as fast into space freed moments ago as into other free space
# (bench/disk-placement.sh shows it). Every blob a run pushes is kept until the end, so its
# pushes write into other space; dd's samples must too. So dd writes a file of its own beside
# the run's storage, before push-big, after it, and after the run, and keeps it until the
# storage goes; the targets use the median of all samples.
DD_SAMPLES=()
sample_dd() {
    local line seconds
    line=$(dd if=/dev/zero of="$1" bs=1M count="$BIG_MIB" conv=fsync 2>&1 | tail -1)
    seconds=$(echo "$line" | sed -n 's/.*copied, \([0-9.]*\) s.*/\1/p')
    DD_SAMPLES+=("$(mib_per_s "$BIG_MIB" "$seconds")")
    echo "dd bs=1M conv=fsync (durable writes) to $(basename "$1"): ${DD_SAMPLES[-1]} MiB/s   ($line)"
}
SHA_S=$(seconds openssl dgst -sha256 "$RANDOM_FILE")
CAT_S=$(seconds cat "$RANDOM_FILE")
SHA_MIBS=$(mib_per_s "$BIG_MIB" "$SHA_S")
CAT_MIBS=$(mib_per_s "$BIG_MIB" "$CAT_S")
echo "openssl dgst -sha256:                 $SHA_MIBS MiB/s"
echo "cat FILE > /dev/null (page cache):    $CAT_MIBS MiB/s"
echo
# The random file's blocks must not still be flushing while run 1 times its fsyncs.
sync

start_marina() {
    local dir=$1 port=$2
    mkdir -p "$dir"
    "$MARINA_BIN" --listen "127.0.0.1:$port" --storage-path "$dir/data" --log-level warn \
        >"$dir/server.log" 2>&1 &
    MARINA_PID=$!
}

start_distribution() {
    local dir=$1 port=$2
    mkdir -p "$dir/data"
    cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$port
EOF
    "$DIST_BIN" serve "$dir/config.yml" >"$dir/server.log" 2>&1 &
    DIST_PID=$!
}

# One `marina bench` of marina against Distribution: bench NAME WORKLOADS writes runNAME.json
# and runNAME.log.
bench() {
    if ! "$MARINA_BIN" bench --url "http://127.0.0.1:$marina_port" --compare "http://127.0.0.1:$dist_port" \
        --json "$OUT/run$1.json" --workloads "$2" --big-size "${BIG_MIB}MiB" --duration "$DURATION" \
        --tags "$TAGS" --repos "$REPOS" --page-requests "$PAGE_REQUESTS" --settle 2>&1 | tee "$OUT/run$1.log"; then
        FAILED=1
        echo "compare.sh: run $1 had failures (see above)"
    fi
}

FAILED=0
STARTED=$(date +%s)
printf 'run\tmarina_idle_kib\tmarina_peak_kib\tdist_idle_kib\tdist_peak_kib\n' >"$OUT/memory.tsv"
for run in $(seq "$RUNS"); do
    echo "## Run $run of $RUNS (fresh storage for both)"
    marina_port=$(free_port)
    dist_port=$(free_port)
    start_marina "$OUT/run$run/marina" "$marina_port"
    start_distribution "$OUT/run$run/distribution" "$dist_port"
    wait_port "$marina_port"
    wait_port "$dist_port"
    sleep 1
    workloads=$REST_WORKLOADS
    [ "$run" = 1 ] && workloads=$REST_WORKLOADS,$PAGE_WORKLOADS
    marina_idle=$(status_kib "$MARINA_PID" VmRSS)
    dist_idle=$(status_kib "$DIST_PID" VmRSS)
    sample_dd "$OUT/run$run/dd-before.bin"
    bench "$run-push" push-big
    sample_dd "$OUT/run$run/dd-between.bin"
    bench "$run" "$workloads"
    printf '%s\t%s\t%s\t%s\t%s\n' "$run" "$marina_idle" "$(status_kib "$MARINA_PID" VmHWM)" \
        "$dist_idle" "$(status_kib "$DIST_PID" VmHWM)" >>"$OUT/memory.tsv"
    stop_servers
    # Distribution writes without fsync: its gigabytes are flushed here, not during the next
    # run's timed workloads. Within a run, --settle does the same before each measurement.
    sync
    sample_dd "$OUT/run$run/dd-after.bin"
    echo
done
DD_MIBS=$(printf '%s\n' "${DD_SAMPLES[@]}" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
echo "dd samples: ${DD_SAMPLES[*]} MiB/s; the targets use their median, $DD_MIBS MiB/s"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); the runs took $(($(date +%s) - STARTED)) s"
echo

python3 "$ROOT/bench/summarize.py" --out "$OUT" --runs "$RUNS" \
    --sha "$SHA_MIBS" --dd "$DD_MIBS" --cat "$CAT_MIBS" | tee "$OUT/summary.txt"
# Storage goes last: removing 100,000 tag folders takes minutes, which must not fall between runs.
rm -rf "$OUT"/run*/marina/data "$OUT"/run*/distribution/data "$OUT"/run*/dd-*.bin
exit "$FAILED"
