#!/usr/bin/env bash
# Shows whether this disk's durable-write speed depends on where the filesystem puts the data:
# `dd conv=fsync` writes 1 GiB N times (default 4), first removing each file before the next, so
# each write lands in space freed moments before, then keeping every file, so each write lands
# in other free space. bench/compare.sh samples dd the second way, as its pushes write.
#
#   bench/disk-placement.sh [N]
#
# Files go under bench/out/ (git-ignored) and are removed at the end.
set -euo pipefail
export LC_ALL=C

N=${1:-4}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=$ROOT/bench/out/disk-placement-$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$DIR"
trap 'rm -rf "$DIR"' EXIT

# Writes 1 GiB to $1 with dd conv=fsync and prints MiB/s.
write_gib() {
    local seconds
    seconds=$(dd if=/dev/zero of="$1" bs=1M count=1024 conv=fsync 2>&1 | tail -1 |
        sed -n 's/.*copied, \([0-9.]*\) s.*/\1/p')
    awk -v s="$seconds" 'BEGIN { printf "%.0f", 1024 / s }'
}

printf 'removing each file before the next write (space just freed):'
for i in $(seq "$N"); do
    printf ' %s' "$(write_gib "$DIR/removed")"
    rm -f "$DIR/removed"
    sync
done
echo ' MiB/s'

printf 'keeping every file (other free space):                      '
for i in $(seq "$N"); do
    printf ' %s' "$(write_gib "$DIR/kept-$i")"
done
echo ' MiB/s'
