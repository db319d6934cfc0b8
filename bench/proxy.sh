#!/usr/bin/env bash
# The pull-through cache against a direct pull, all on loopback, with curl as the client:
#
#   bench/proxy.sh [--size-mib N] [--runs N] [--upstream-rate R]   (default 1024 MiB, 3 runs)
#
# - upstream: a marina on the filesystem holding one blob of N MiB of random bytes;
# - direct:   curl pulls the blob from the upstream as the mirror reaches it;
# - local:    curl pulls it from the upstream marina itself (a normal marina pull);
# - cold:     curl pulls it through a second marina with [[proxy]] in front of the upstream,
#             started on empty storage each run, so every run misses and fetches;
# - warm:     curl pulls it again through that mirror, from its cache.
# Prints each run and the medians, and the targets: cold at most 1.10x direct, warm about 1.0x
# local.
# With --upstream-rate R (nginx's limit_rate, such as 100m: bytes a second per connection), the
# upstream is reached through an nginx on loopback that sends at most R, as a registry across a
# network would; the direct pull goes through the same nginx. Without it, the upstream answers
# at loopback speed (sendfile, several GB/s), and the cold pull is bound by this machine's CPU.
# Output goes to bench/out/proxy-<time>/ (git-ignored).
set -euo pipefail
export LC_ALL=C

SIZE_MIB=1024 RUNS=3 RATE= ARGS="$*"
while [ $# -gt 0 ]; do
    case "$1" in
    --upstream-rate) RATE=$2; shift 2 ;;
    --size-mib) SIZE_MIB=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "proxy.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MARINA_BIN=${MARINA_BIN:-$ROOT/target/release/marina}
for tool in "$MARINA_BIN" curl python3; do
    command -v "$tool" >/dev/null || { echo "proxy.sh: $tool is missing" >&2; exit 2; }
done
OUT=$ROOT/bench/out/proxy-$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$OUT"

PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
# serve NAME PORT [ARGS...]: a marina on its own storage folder, in the background.
serve() {
    local name=$1 port=$2
    shift 2
    env -u MARINA_CONFIG "$MARINA_BIN" --listen "127.0.0.1:$port" \
        --storage-path "$OUT/$name-data" --log-level warn "$@" >"$OUT/$name.log" 2>&1 &
    PIDS+=("$!")
    LAST_PID=$!
    wait_port "$port"
}
# pull URL: seconds curl took to download URL to nowhere, after checking the status.
pull() {
    local out
    out=$(curl -sS --noproxy '*' -o /dev/null -w '%{http_code} %{time_total} %{size_download}' "$1")
    set -- $out
    [ "$1" = 200 ] && [ "$3" = $((SIZE_MIB << 20)) ] || { echo "proxy.sh: GET answered $1 with $3 bytes" >&2; exit 1; }
    printf '%s' "$2"
}
median() { tr ' ' '\n' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
rate() { awk -v s="$1" -v m="$SIZE_MIB" 'BEGIN { printf "%.0f MiB/s", m / s }'; }

echo "# pull-through cache: cold and warm pulls through marina against a direct pull"
echo "date: $(date -u '+%F %T UTC'), nproc $(nproc), $SIZE_MIB MiB blob, $RUNS runs, command: bench/proxy.sh $ARGS"
echo "marina: $("$MARINA_BIN" --version | head -1)"

head -c "$((SIZE_MIB << 20))" /dev/urandom >"$OUT/blob"
DIGEST=sha256:$(sha256sum "$OUT/blob" | cut -d' ' -f1)
UP_PORT=$(free_port)
serve upstream "$UP_PORT"
# (-T - streams the file: a named one would be appended to a URL ending in a slash.)
curl -sS --noproxy '*' -o /dev/null -f -X POST -T - -H 'Content-Type: application/octet-stream' \
    -H "Content-Length: $((SIZE_MIB << 20))" -H 'Transfer-Encoding:' \
    "http://127.0.0.1:$UP_PORT/v2/bench/big/blobs/uploads/?digest=$DIGEST" <"$OUT/blob"
rm -f "$OUT/blob"
REMOTE_PORT=$UP_PORT
if [ -n "$RATE" ]; then
    command -v nginx >/dev/null || { echo "proxy.sh: --upstream-rate needs nginx (nginx-light)" >&2; exit 2; }
    REMOTE_PORT=$(free_port)
    mkdir -p "$OUT/nginx"
    cat >"$OUT/nginx/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $OUT/nginx/nginx.pid;
error_log $OUT/nginx/error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $OUT/nginx/body;
    proxy_temp_path $OUT/nginx/proxy;
    server {
        listen 127.0.0.1:$REMOTE_PORT;
        location / {
            proxy_pass http://127.0.0.1:$UP_PORT;
            proxy_max_temp_file_size 0;
            limit_rate $RATE;
        }
    }
}
CONF
    nginx -c "$OUT/nginx/nginx.conf" -p "$OUT/nginx" &
    PIDS+=("$!")
    wait_port "$REMOTE_PORT"
    echo "upstream reached through nginx at limit_rate $RATE (bytes a second)"
fi
printf '[[proxy]]\nprefix = "up.local"\nremote = "http://127.0.0.1:%s"\n' "$REMOTE_PORT" >"$OUT/mirror.toml"
DIRECT=http://127.0.0.1:$REMOTE_PORT/v2/bench/big/blobs/$DIGEST

LOCAL=http://127.0.0.1:$UP_PORT/v2/bench/big/blobs/$DIGEST
direct=() local_=() cold=() warm=()
pull "$LOCAL" >/dev/null   # the upstream's file in the page cache, as for every run below
for run in $(seq "$RUNS"); do
    direct+=("$(pull "$DIRECT")")
    local_+=("$(pull "$LOCAL")")
    port=$(free_port)
    rm -rf "$OUT/mirror-data"
    serve mirror "$port" --config "$OUT/mirror.toml"
    mirror_pid=$LAST_PID
    cold+=("$(pull "http://127.0.0.1:$port/v2/up.local/bench/big/blobs/$DIGEST")")
    # The mirror stores the verified blob after the client got it; the warm pull waits for that.
    hex=${DIGEST#sha256:}
    for _ in $(seq 600); do [ -f "$OUT/mirror-data/blobs/sha256/${hex:0:2}/$hex" ] && break; sleep 0.1; done
    sync
    warm+=("$(pull "http://127.0.0.1:$port/v2/up.local/bench/big/blobs/$DIGEST")")
    kill "$mirror_pid"; wait "$mirror_pid" 2>/dev/null || true
    echo "run $run: direct ${direct[-1]} s, local ${local_[-1]} s, cold through marina ${cold[-1]} s, warm through marina ${warm[-1]} s"
done

d=$(echo "${direct[*]}" | median) l=$(echo "${local_[*]}" | median)
c=$(echo "${cold[*]}" | median) w=$(echo "${warm[*]}" | median)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "median direct pull from the upstream: $d s ($(rate "$d"))"
echo "median local pull from the upstream marina: $l s ($(rate "$l"))"
echo "median cold pull through marina: $c s ($(rate "$c")): $(ratio "$c" "$d")x direct (target: at most 1.10)"
echo "median warm pull through marina: $w s ($(rate "$w")): $(ratio "$w" "$l")x a local marina pull (target: about 1.0)"
echo "(raw output in $OUT)"
