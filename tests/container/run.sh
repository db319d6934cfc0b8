#!/usr/bin/env bash
# The container image, tested offline: builds the repository's Containerfile with its two base
# images swapped for local stand-ins, then runs the README's commands against the result.
#
#   bash tests/container/run.sh
#
# No image registry is reachable from CI, so the default base images cannot be pulled. This
# script makes stand-ins from Debian packages (apt is reachable) and passes them as build
# arguments; everything after the build is exactly what the README says:
#   builder  docker.io/library/rust:1-bookworm -> a Debian 12 debootstrap (minbase, gcc,
#            libc6-dev, ca-certificates) with this machine's Rust toolchain mounted where the
#            official image keeps its own (/usr/local/rustup, /usr/local/cargo)
#   runtime  gcr.io/distroless/base-nossl-debian12 -> the same Debian packages as distroless
#            base-nossl (glibc, tzdata, the CA bundle) and its users, nonroot = 65532
#   crates   fetched on the host first (cargo fetch --locked, into the mounted CARGO_HOME); the
#            build itself runs with --network none
#   target/  a cargo target folder that outlives the run is mounted at /build/target, so a
#            rebuild after an edit is incremental
#
# Then, in a fresh temporary folder as the working directory: `mkdir -p ./registry-data`, the
# README's `podman run ... -p 5000:5000 -v ./registry-data:/data:Z marina-distribution`, a push
# and pull with skopeo (digests compared), the data in ./registry-data, `podman logs`, a timed
# `podman stop` (exit status 0), `podman rm`; marina as nonroot on a folder owned by 65532; the
# error when the folder is not writable; the image's size (FAIL over 40 MB), labels and contents.
# Prints one `ok  - ...` or `FAIL - ...` line per check, ends with `N passed, M failed`, exits
# non-zero on any failure.
#
# Needs root, port 5000 free on this machine, and what scripts/setup.sh installs (podman, runc,
# skopeo, umoci, debootstrap, jq, curl) plus a Rust toolchain under rustup.
#
# Kept between runs, in $MARINA_CONTAINER_CACHE (default target/container/, ignored by git):
# the stand-in base images' root filesystems (one debootstrap, ~40 s, redone only when this
# script's recipe changes), podman's image store (vfs), and the cargo target folder of the
# image build. Everything else podman, CNI and skopeo would leave behind (/var/lib/containers,
# /var/lib/cni, /run/netns, /run/runc, /run/crun, podman's cgroups, CNI's iptables chains, the
# bridge, ip_forward) is put back as it was at the start.
#
# Environment:
#   MARINA_CONTAINER_CACHE   cache folder (default <repo>/target/container)
#   DEBIAN_MIRROR            debootstrap mirror (default http://deb.debian.org/debian)
#   CONTAINER_TEST_ONLINE=1  also run the README's plain `podman build -t marina-distribution .`
#                            with the default base images (needs docker.io and gcr.io)
#   KEEP_WORK=1              keep the temporary folder
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=tests/clients/lib.sh
source "$REPO_ROOT/tests/clients/lib.sh"

CACHE=${MARINA_CONTAINER_CACHE:-$REPO_ROOT/target/container}
mkdir -p "$CACHE" && CACHE=$(cd "$CACHE" && pwd)   # podman's database records absolute paths
WORK=$(mktemp -d "${TMPDIR:-/tmp}/marina-container.XXXXXX")
RESULTS=$WORK/results
: >"$RESULTS"
export RESULTS WORK
export PYTHONDONTWRITEBYTECODE=1
START_SECONDS=$SECONDS
MAIN_DONE=0
IMAGE=marina-distribution
PORT=5000
BASE=http://127.0.0.1:$PORT
MAX_IMAGE_BYTES=40000000   # 40 MB
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BRIDGE=marinatest0
SUBNET_PREFIX=10.89.231
CONTAINERS=(marina-registry marina-nonroot marina-volume marina-readonly marina-contents)

# ---- teardown and summary --------------------------------------------------------------------

# Global state podman, CNI and runc may create: what did not exist at the start is removed at
# the end.
GLOBAL_PATHS=(/var/lib/containers /var/lib/cni /run/netns /run/runc /run/crun /run/containers
              /run/libpod /etc/cni/net.d/cni.lock)
declare -A EXISTED=()
for p in "${GLOBAL_PATHS[@]}"; do [ -e "$p" ] && EXISTED[$p]=1; done
CGROUP_PARENTS=()
for d in /sys/fs/cgroup/*/; do
  [ -e "${d}libpod_parent" ] || CGROUP_PARENTS+=("${d}libpod_parent")
done
[ -e /sys/fs/cgroup/libpod_parent ] || CGROUP_PARENTS+=(/sys/fs/cgroup/libpod_parent)
HAD_CNI_CHAINS=0
iptables -t nat -S CNI-HOSTPORT-DNAT >/dev/null 2>&1 && HAD_CNI_CHAINS=1
IP_FORWARD=$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null || true)
PODMAN_READY=0

restore_globals() {
  local p d
  if [ "$HAD_CNI_CHAINS" = 0 ] && command -v iptables >/dev/null; then
    iptables -t nat -D PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT 2>/dev/null
    iptables -t nat -D OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT 2>/dev/null
    iptables -t nat -D POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" \
      -j CNI-HOSTPORT-MASQ 2>/dev/null
    for p in CNI-HOSTPORT-DNAT CNI-HOSTPORT-MASQ CNI-HOSTPORT-SETMARK; do
      iptables -t nat -F "$p" 2>/dev/null
    done
    for p in CNI-HOSTPORT-DNAT CNI-HOSTPORT-MASQ CNI-HOSTPORT-SETMARK; do
      iptables -t nat -X "$p" 2>/dev/null
    done
  fi
  ip link del "$BRIDGE" 2>/dev/null
  if [ -n "$IP_FORWARD" ] && [ "$(cat /proc/sys/net/ipv4/ip_forward)" != "$IP_FORWARD" ]; then
    echo "$IP_FORWARD" >/proc/sys/net/ipv4/ip_forward
  fi
  for d in "${CGROUP_PARENTS[@]}"; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  for p in "${GLOBAL_PATHS[@]}"; do
    if [ -z "${EXISTED[$p]:-}" ] && [ -e "$p" ]; then
      if [ "$p" = /run/netns ]; then   # CNI bind-mounts it onto itself
        while grep -q ' /run/netns ' /proc/self/mountinfo && umount /run/netns 2>/dev/null; do :; done
        rmdir "$p" 2>/dev/null
      else
        rm -rf -- "$p"
      fi
    fi
  done
  return 0
}

on_exit() {
  local rc=$? c
  set +e
  trap - EXIT INT TERM
  if [ "$MAIN_DONE" != 1 ]; then
    fail "run.sh stopped early (exit $rc); see the messages above"
  fi
  if [ "$PODMAN_READY" = 1 ]; then
    for c in "${CONTAINERS[@]}"; do pm rm -f -t 2 "$c" >/dev/null 2>&1; done
    pm volume prune -f >/dev/null 2>&1
  fi
  restore_globals
  tally
  if [ "${KEEP_WORK:-0}" = 1 ]; then
    note "work folder kept: $WORK"
  else
    rm -rf -- "$WORK"
  fi
  summarize_and_exit
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

abort() {
  MAIN_DONE=1
  exit 1
}

need() { # need CMD APT_PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  fail "$1 not found: run scripts/setup.sh (apt install $2)"
  return 1
}

# ---- prerequisites ---------------------------------------------------------------------------

if [ "$(id -u)" != 0 ]; then
  fail "run.sh must run as root (podman's store, debootstrap, the port mapping)"
  abort
fi
missing=0
for spec in podman:podman runc:runc skopeo:skopeo umoci:umoci debootstrap:debootstrap jq:jq \
            curl:curl python3:python3 iptables:iptables ip:iproute2 flock:util-linux \
            unshare:util-linux readelf:binutils rustc:rustup cargo:rustup; do
  need "${spec%%:*}" "${spec#*:}" || missing=1
done
[ "$missing" = 0 ] || abort
RUSTUP_DIR=${RUSTUP_HOME:-$HOME/.rustup}
CARGO_DIR=${CARGO_HOME:-$HOME/.cargo}
if [ ! -d "$RUSTUP_DIR/toolchains" ] || [ ! -x "$CARGO_DIR/bin/cargo" ]; then
  fail "no rustup toolchain at $RUSTUP_DIR with cargo in $CARGO_DIR/bin (the builder stand-in mounts them)"
  abort
fi

exec 9>"$CACHE/lock"
if ! flock -n 9; then
  fail "another run of tests/container/run.sh holds $CACHE/lock"
  abort
fi

port_in_use() {
  python3 - "$PORT" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("0.0.0.0", int(sys.argv[1])))
except OSError:
    sys.exit(0)
sys.exit(1)
EOF
}
if port_in_use; then
  fail "port $PORT is already in use on this machine; the README's -p $PORT:$PORT needs it free:"
  show_output "$(ss -ltnp 2>/dev/null | grep -E "[:.]$PORT\b" || echo "(ss shows nothing)")"
  abort
fi
ok "port $PORT is free"

# ---- podman, with its stores in the cache and the work folder --------------------------------

mkdir -p "$WORK/cni" "$WORK/cni-ipam" "$WORK/podman-tmp"
# Only storage and cgroup flags here: the README's flags go through untouched. The rest is in
# containers.conf:
#   - a "podman" network of our own (its bridge and IP leases stay ours);
#   - runc when cgroups are in hybrid mode (crun refuses it);
#   - ulimits no higher than this process may set: without CAP_SYS_RESOURCE podman's default
#     (1048576 open files) fails, and podman itself caps its processes at 32768.
# The run root stays with the store (podman's database insists), its temporary folder is new each
# run (so podman sees a fresh boot and forgets containers' states).
PM=(podman --root "$CACHE/storage" --runroot "$CACHE/runroot" --storage-driver vfs
    --cgroup-manager cgroupfs --events-backend none)
pm() { command "${PM[@]}" "$@"; }
cap_sys_resource() {
  local eff
  eff=$(awk '/^CapEff:/ { print $2 }' /proc/self/status)
  (( (16#$eff >> 24) & 1 ))
}
{
  echo "[containers]"
  if ! cap_sys_resource; then
    nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
    [ "$nofile" = unlimited ] && nofile=1048576
    { [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; } && nproc=32768
    echo "default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]"
  fi
  echo "[engine]"
  echo "events_logger = \"none\""
  echo "cgroup_manager = \"cgroupfs\""
  echo "tmp_dir = \"$WORK/podman-tmp\""
  if [ -d /sys/fs/cgroup/unified ]; then
    echo "runtime = \"runc\""
  fi
  echo "[network]"
  echo "network_config_dir = \"$WORK/cni\""
} >"$WORK/containers.conf"
cat >"$WORK/cni/marina-test.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "podman",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$WORK/cni-ipam",
        "routes": [{ "dst": "0.0.0.0/0" }],
        "ranges": [[{ "subnet": "$SUBNET_PREFIX.0/24", "gateway": "$SUBNET_PREFIX.1" }]]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
cat >"$WORK/registries.conf" <<'EOF'
unqualified-search-registries = []
EOF
cat >"$WORK/policy.json" <<'EOF'
{ "default": [ { "type": "insecureAcceptAnything" } ] }
EOF
export CONTAINERS_CONF=$WORK/containers.conf
export CONTAINERS_REGISTRIES_CONF=$WORK/registries.conf REGISTRIES_CONFIG_PATH=$WORK/registries.conf
# The database records the store's paths: after the checkout moved, start it afresh (the images
# stay; containers of earlier runs are gone anyway).
if pm info 2>&1 | grep -q 'database configuration mismatch'; then
  note "podman's database names other paths; starting it afresh"
  rm -f "$CACHE/storage/libpod/bolt_state.db"
fi
PODMAN_READY=1
for c in "${CONTAINERS[@]}"; do pm rm -f -t 2 "$c" >/dev/null 2>&1 || true; done

# skopeo, and podman when it copies images (import, build), keep a blob cache in
# /var/lib/containers/cache with no option to move it. They run in a private mount namespace
# with a folder of the work folder over /var/lib/containers (made for the run when missing, and
# removed at the end). `podman run` cannot: CNI's network namespaces must stay visible.
mkdir -p /var/lib/containers "$WORK/varlib"
masked() {
  unshare --mount --propagation private -- sh -c \
    'mount --bind "$0" "$1" && shift && exec "$@"' "$WORK/varlib" /var/lib/containers "$@"
}
pmi() { masked "${PM[@]}" "$@"; }
sk() {
  masked timeout -k 5 120 skopeo --policy "$WORK/policy.json" \
    --registries-conf "$WORK/registries.conf" "$@"
}

# ---- the files themselves --------------------------------------------------------------------
# From here on, a failed check is recorded and the run goes on; a failed step that later ones
# need ends it with abort.
set +e
cd "$REPO_ROOT"
check_files_equal ".dockerignore is the same as .containerignore" .containerignore .dockerignore
DEFAULT_BUILDER=$(sed -n 's/^ARG BUILDER_IMAGE=//p' Containerfile)
DEFAULT_RUNTIME=$(sed -n 's/^ARG RUNTIME_IMAGE=//p' Containerfile)
check_eq "Containerfile: default builder image" "docker.io/library/rust:1-bookworm" "$DEFAULT_BUILDER"
check_eq "Containerfile: default runtime image" "gcr.io/distroless/base-nossl-debian12" "$DEFAULT_RUNTIME"
cargo_field() { # cargo_field KEY: KEY = "value" of Cargo.toml's [workspace.package]
  awk -v k="$1" '/^\[/ { s = ($0 == "[workspace.package]") }
    s && $1 == k { sub(/^[^"]*"/, ""); sub(/".*$/, ""); print; exit }' Cargo.toml
}
CARGO_VERSION=$(cargo_field version)
CARGO_LICENSE=$(cargo_field license)
check_eq "Containerfile: ARG VERSION defaults to Cargo.toml's workspace version" "$CARGO_VERSION" \
  "$(sed -n 's/^ARG VERSION=//p' Containerfile)"

README_COMMANDS='podman build -t marina-distribution .
mkdir -p ./registry-data
podman run -d --name marina-registry -p 5000:5000 -v ./registry-data:/data:Z marina-distribution
podman logs marina-registry
podman stop marina-registry && podman rm marina-registry'
readme_block=$(awk '/^## Running in a container/ { s = 1 } s && /^```sh/ { b = 1; next }
  b && /^```/ { exit } b' README.md)
check_eq "README: \"Running in a container\" opens with the five commands this test runs" \
  "$README_COMMANDS" "$(head -n 5 <<<"$readme_block")"

step "entrypoint: rustc --test deploy/container/entrypoint.rs, and its tests pass" \
  sh -c 'nice -n 19 rustc --edition 2024 --test -o "$1/entrypoint-test" deploy/container/entrypoint.rs &&
    "$1/entrypoint-test" -q' _ "$WORK"

# ---- stand-in base images (cached) -----------------------------------------------------------

SUITE=bookworm
INCLUDE=gcc,libc6-dev,ca-certificates
# One key for the debootstrap recipe, one for the runtime stand-in made from its result.
BUILDER_KEY=$(printf 'v1 %s minbase %s\n' "$SUITE" "$INCLUDE" | sha256sum | cut -c1-12)
RUNTIME_KEY=$( { echo "$BUILDER_KEY"; cat "$HERE/runtime_standin.py"; } | sha256sum | cut -c1-12)
BUILDER_TAR=$CACHE/base/builder-$SUITE-$BUILDER_KEY.tar
RUNTIME_TAR=$CACHE/base/runtime-$SUITE-$RUNTIME_KEY.tar
BUILDER_TAG=localhost/marina-test/builder:$BUILDER_KEY
RUNTIME_TAG=localhost/marina-test/runtime:$RUNTIME_KEY

make_builder_tar() {
  local root=$WORK/debootstrap
  nice -n 19 debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$root" "$DEBIAN_MIRROR" \
    >"$WORK/debootstrap.log" 2>&1 || { tail -n 20 "$WORK/debootstrap.log"; return 1; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/info "$root"/usr/share/locale
  mkdir -p "$CACHE/base"
  tar --numeric-owner -C "$root" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    -cf "$BUILDER_TAR.partial" . && mv "$BUILDER_TAR.partial" "$BUILDER_TAR"
  rm -rf -- "$root"
}
make_runtime_tar() {
  local root=$WORK/builder-root
  mkdir -p "$root"
  tar --numeric-owner -C "$root" -xf "$BUILDER_TAR" &&
    python3 "$HERE/runtime_standin.py" "$root" "$RUNTIME_TAR.partial" &&
    mv "$RUNTIME_TAR.partial" "$RUNTIME_TAR"
  local rc=$?
  rm -rf -- "$root"
  return "$rc"
}

ONLINE=${CONTAINER_TEST_ONLINE:-0}
if [ "$ONLINE" = 1 ]; then
  note "CONTAINER_TEST_ONLINE=1: the README's build as it is, with the default base images"
else
  t0=$SECONDS
  if [ -f "$BUILDER_TAR" ]; then
    ok "builder root filesystem cached ($BUILDER_TAR)"
  else
    step "debootstrap --variant=minbase --include=$INCLUDE $SUITE (the builder stand-in)" \
      make_builder_tar || abort
    note "debootstrap took $((SECONDS - t0)) s"
  fi
  if [ -f "$RUNTIME_TAR" ]; then
    ok "runtime root filesystem cached ($RUNTIME_TAR)"
  else
    step "the distroless stand-in's root filesystem, from the builder's packages" make_runtime_tar || abort
  fi
  for old in "$CACHE"/base/*; do   # tars of older recipes
    [ "$old" = "$BUILDER_TAR" ] || [ "$old" = "$RUNTIME_TAR" ] || rm -rf -- "$old"
  done
  # Images of an older recipe go; the current ones are imported once.
  for old in $(pm images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/marina-test/' || true); do
    case "$old" in "$BUILDER_TAG" | "$RUNTIME_TAG") ;; *) pmi rmi -f "$old" >/dev/null 2>&1 || true ;; esac
  done
  if ! pm image exists "$BUILDER_TAG"; then
    step "podman import the builder stand-in as $BUILDER_TAG" pmi import \
      --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV RUSTUP_HOME=/usr/local/rustup' --change 'ENV CARGO_HOME=/usr/local/cargo' \
      "$BUILDER_TAR" "$BUILDER_TAG" || abort
  fi
  if ! pm image exists "$RUNTIME_TAG"; then
    step "podman import the runtime stand-in as $RUNTIME_TAG" pmi import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
      "$RUNTIME_TAR" "$RUNTIME_TAG" || abort
  fi

  note "offline, the build differs from the README's \`podman build -t $IMAGE .\` in:"
  note "  FROM $DEFAULT_BUILDER -> $BUILDER_TAG (Debian 12 debootstrap, gcc, libc6-dev; this machine's rustup toolchain mounted at /usr/local/rustup and /usr/local/cargo)"
  note "  FROM $DEFAULT_RUNTIME -> $RUNTIME_TAG (distroless base-nossl's Debian packages and users, from the same debootstrap)"
  note "  crates: cargo fetch --locked on the host first, then the build runs with --network none"
  note "  cargo's target folder: $CACHE/cargo-target mounted at /build/target (incremental across runs)"
  note "  podman: vfs store and run root in $CACHE, temporary state in the work folder, runc and ulimits fit for this machine; the runs keep the README's flags"
  note "skipped: the README's build with the default base images (no image registry reachable; CONTAINER_TEST_ONLINE=1 runs it instead)"
fi

# ---- the build -------------------------------------------------------------------------------

build_offline() {
  masked nice -n 19 "${PM[@]}" build --pull=never --network none \
    --build-arg "BUILDER_IMAGE=$BUILDER_TAG" --build-arg "RUNTIME_IMAGE=$RUNTIME_TAG" \
    --volume "$RUSTUP_DIR:/usr/local/rustup:ro" --volume "$CARGO_DIR:/usr/local/cargo" \
    --volume "$CACHE/cargo-target:/build/target" \
    -t "$IMAGE" -f Containerfile .
}
# Online, the README's command as it is (host networking: the test's own podman network does
# not route out).
build_online() { masked nice -n 19 "${PM[@]}" build --network host -t "$IMAGE" .; }
if [ "$ONLINE" = 1 ]; then
  build=build_online how="with the default base images (CONTAINER_TEST_ONLINE=1)"
else
  build=build_offline how="with the stand-ins"
  step "cargo fetch --locked (crates for the offline build, into $CARGO_DIR)" \
    nice -n 19 cargo fetch --locked --manifest-path "$REPO_ROOT/Cargo.toml" || abort
  mkdir -p "$CACHE/cargo-target"
fi
BUILD_STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
t0=$SECONDS
if pm_out=$("$build" 2>&1); then
  ok "podman build of the Containerfile $how ($((SECONDS - t0)) s)"
else
  fail "podman build of the Containerfile $how (after $((SECONDS - t0)) s)"
  show_output "$pm_out" 40
  abort
fi
note "build took $((SECONDS - t0)) s"
# Layers of earlier builds go (vfs keeps a full copy of each); this build's stay as its cache.
pmi image prune -f --filter "until=$BUILD_STARTED" >/dev/null 2>&1 || true

# ---- the image -------------------------------------------------------------------------------

SIZE=$(pm image inspect --format '{{.Size}}' "$IMAGE")
SIZE_MB=$(awk -v s="$SIZE" 'BEGIN { printf "%.1f", s / 1000000 }')
if [ "$SIZE" -le "$MAX_IMAGE_BYTES" ]; then
  ok "image size $SIZE_MB MB ($SIZE bytes) is under 40 MB"
else
  fail "image size $SIZE_MB MB ($SIZE bytes) is over 40 MB"
fi
inspect() { pm image inspect --format "$1" "$IMAGE"; }
check_eq "label org.opencontainers.image.title" marina "$(inspect '{{index .Labels "org.opencontainers.image.title"}}')"
check_eq "label org.opencontainers.image.licenses is Cargo.toml's license" "$CARGO_LICENSE" \
  "$(inspect '{{index .Labels "org.opencontainers.image.licenses"}}')"
check_eq "label org.opencontainers.image.version is Cargo.toml's version" "$CARGO_VERSION" \
  "$(inspect '{{index .Labels "org.opencontainers.image.version"}}')"
check_eq "image exposes 5000/tcp" '["5000/tcp"]' "$(pm image inspect "$IMAGE" | jq -c '.[0].Config.ExposedPorts | keys')"
check_eq "image entrypoint, volume and stop signal" '[["/usr/local/bin/marina-entrypoint"],["/data"],"SIGTERM"]' \
  "$(pm image inspect "$IMAGE" | jq -c '.[0].Config | [.Entrypoint, (.Volumes | keys), .StopSignal]')"

image_contents() {
  pm create --name marina-contents "$IMAGE" >/dev/null &&
    pm export marina-contents >"$WORK/contents.tar" &&
    pm rm marina-contents >/dev/null &&
    tar --numeric-owner -tvf "$WORK/contents.tar" >"$WORK/contents.txt"
}
if step "podman export of the image's file system" image_contents; then
  unwanted=$(awk '{ print $6 }' "$WORK/contents.txt" |
    grep -E '^(usr/)?(s?bin)/(sh|bash|dash|busybox|gcc|cc|ld|apt|apt-get|dpkg)$' || true)
  check_eq "no shell, compiler or package manager in the image" "" "$unwanted"
  check_eq "/data belongs to nonroot (65532)" "65532/65532" \
    "$(awk '$6 == "data/" { print $2 }' "$WORK/contents.txt")"
  check_eq "the image sets STORAGE_PATH=/data" yes \
    "$(pm image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' marina-distribution |
       grep -qx 'STORAGE_PATH=/data' && echo yes || echo no)"
  mkdir -p "$WORK/bin"
  if tar -xf "$WORK/contents.tar" -C "$WORK/bin" usr/local/bin/marina 2>/dev/null; then
    debug_sections=$(readelf -S -W "$WORK/bin/usr/local/bin/marina" | grep -cE '\.(debug_[a-z]+|symtab)\b' || true)
    check_eq "the marina binary is stripped (no .debug_* or .symtab section)" 0 "$debug_sections"
    note "marina binary: $(stat -c %s "$WORK/bin/usr/local/bin/marina") bytes"
  else
    fail "usr/local/bin/marina is not in the image"
  fi
  rm -f "$WORK/contents.tar"
fi

# ---- the README's commands -------------------------------------------------------------------

CWD=$WORK/cwd
mkdir -p "$CWD"
cd "$CWD"
step "mkdir -p ./registry-data" mkdir -p ./registry-data
if ! step "podman run -d --name marina-registry -p 5000:5000 -v ./registry-data:/data:Z marina-distribution" \
    pm run -d --name marina-registry -p 5000:5000 -v ./registry-data:/data:Z marina-distribution; then
  abort
fi
answered=0
for _ in $(seq 100); do
  if [ "$(reg_curl -o /dev/null -w '%{http_code}' "$BASE/v2/" 2>/dev/null)" = 200 ]; then answered=1; break; fi
  sleep 0.1
done
if [ "$answered" = 1 ]; then
  ok "marina answers GET /v2/ on 127.0.0.1:$PORT through the port mapping"
else
  fail "marina does not answer on 127.0.0.1:$PORT"
  show_output "$(pm logs marina-registry 2>&1)"
  abort
fi

# An image to push, built offline.
L=$WORK/oci
build_input() {
  mkdir -p "$WORK/src/app"
  printf 'marina in a container\n' >"$WORK/src/app/hello.txt"
  head -c 1048576 /dev/urandom >"$WORK/src/app/blob.bin"
  umoci init --layout "$L" && umoci new --image "$L:v1" &&
    umoci insert --image "$L:v1" "$WORK/src/app" /app &&
    umoci config --image "$L:v1" --os linux --architecture amd64 --config.cmd /app/hello.txt
}
step "an OCI layout built offline with umoci" build_input || abort
D_V1=$(layout_digest "$L" v1)
M_V1=$(layout_blob "$L" "$D_V1")
R=127.0.0.1:$PORT/e2e/container
if step "skopeo copy --preserve-digests oci:v1 -> docker://$R:v1" \
    sk copy --preserve-digests --dest-tls-verify=false "oci:$L:v1" "docker://$R:v1"; then
  check_manifest_pushed "the registry serves e2e/container:v1 with the layout's digest and bytes" \
    e2e/container v1 "$D_V1" "$M_V1"
  if step "skopeo copy docker://$R:v1 -> oci: (pull back)" \
      sk copy --preserve-digests --src-tls-verify=false "docker://$R:v1" "oci:$WORK/back:v1"; then
    check_eq "pulled manifest digest equals the pushed one" "$D_V1" "$(layout_digest "$WORK/back" v1 || true)"
    bad=()
    for d in $(manifest_blobs "$M_V1"); do
      cmp -s "$(layout_blob "$WORK/back" "$d")" "$(layout_blob "$L" "$d")" || bad+=("$d")
    done
    check_eq "pulled config and layer are byte-identical to the pushed ones" "" "${bad[*]}"
  fi
  # The data is in ./registry-data on the host.
  missing=()
  for d in "$D_V1" $(manifest_blobs "$M_V1"); do
    f=./registry-data/blobs/sha256/$(hex_of "$d" | cut -c1-2)/$(hex_of "$d")
    [ "$(file_digest "$f" 2>/dev/null)" = "$d" ] || missing+=("$f")
  done
  check_eq "./registry-data/blobs holds the manifest, config and layer, each matching its digest" "" "${missing[*]}"
  if [ -f "./registry-data/repos/e2e/container/_manifests/sha256/$(hex_of "$D_V1")" ] &&
      grep -q "$(hex_of "$D_V1")" ./registry-data/repos/e2e/container/_tags/v1 2>/dev/null; then
    ok "./registry-data/repos/e2e/container links the manifest and tag v1"
  else
    fail "./registry-data/repos/e2e/container lacks the manifest link or tag v1"
    show_output "$(find ./registry-data/repos 2>&1 | head -n 20)"
  fi
fi

LOGS=$(pm logs marina-registry 2>&1 || true)
if grep -q 'marina is serving listen=0.0.0.0:5000' <<<"$LOGS"; then
  ok "podman logs marina-registry shows marina's start line"
else
  fail "podman logs marina-registry lacks 'marina is serving listen=0.0.0.0:5000'"
  show_output "$LOGS"
fi
pid=$(pm inspect --format '{{.State.Pid}}' marina-registry)
uid=$(awk '/^Uid:/ { print $3 }' "/proc/$pid/status" 2>/dev/null || echo "?")
if [ "$uid" = 0 ] && grep -q 'marina-entrypoint: the storage folder' <<<"$LOGS"; then
  ok "on a folder owned by root, marina runs as the container's root and the log says why"
  note "$(grep 'marina-entrypoint:' <<<"$LOGS" | head -n 1)"
else
  fail "on a folder owned by root: marina runs as uid $uid; entrypoint note: $(grep -c 'marina-entrypoint:' <<<"$LOGS")"
fi

t0=$(date +%s%N)
step "podman stop marina-registry" pm stop marina-registry
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
status=$(pm inspect --format '{{.State.ExitCode}}' marina-registry 2>/dev/null || echo "?")
check_eq "marina exited with status 0 on SIGTERM" 0 "$status"
if [ "$ms" -lt 5000 ]; then
  ok "podman stop took $ms ms (podman's timeout is 10 s)"
else
  fail "podman stop took $ms ms: marina did not stop promptly on SIGTERM"
fi
if grep -q 'stopped: every request in flight has finished' <<<"$(pm logs marina-registry 2>&1)"; then
  ok "marina logged its clean stop"
else
  fail "marina's log lacks its stop line"
  show_output "$(pm logs marina-registry 2>&1)" 5
fi
step "podman rm marina-registry" pm rm marina-registry

# ---- nonroot, and a folder it cannot write ---------------------------------------------------

mkdir -p ./nonroot-data
chown 65532:65532 ./nonroot-data
if step "podman run on a folder owned by 65532 (--network none)" \
    pm run -d --name marina-nonroot --network none -v ./nonroot-data:/data:Z marina-distribution; then
  for _ in $(seq 100); do
    grep -q 'marina is serving' <<<"$(pm logs marina-nonroot 2>&1)" && break
    sleep 0.1
  done
  pid=$(pm inspect --format '{{.State.Pid}}' marina-nonroot)
  check_eq "marina runs as nonroot (uid 65532) when the folder allows it" 65532 \
    "$(awk '/^Uid:/ { print $3 }' "/proc/$pid/status" 2>/dev/null || echo "?")"
  check_eq "its files in the folder belong to 65532" "65532:65532" "$(stat -c %u:%g ./nonroot-data/.lock 2>/dev/null || echo missing)"
  check_eq "no note from the entrypoint when it steps down" 0 "$(pm logs marina-nonroot 2>&1 | grep -c 'marina-entrypoint:' || true)"
  pm stop marina-nonroot >/dev/null
  check_eq "nonroot marina exited with status 0 on SIGTERM" 0 "$(pm inspect --format '{{.State.ExitCode}}' marina-nonroot)"
  pm rm marina-nonroot >/dev/null
fi

if step "podman run with a new named volume at /data (--network none)" \
    pm run -d --name marina-volume --network none -v marina-test-data:/data marina-distribution; then
  for _ in $(seq 100); do
    grep -q 'marina is serving' <<<"$(pm logs marina-volume 2>&1)" && break
    sleep 0.1
  done
  pid=$(pm inspect --format '{{.State.Pid}}' marina-volume)
  check_eq "on a named volume (a copy of the image's /data) marina runs as nonroot" 65532 \
    "$(awk '/^Uid:/ { print $3 }' "/proc/$pid/status" 2>/dev/null || echo "?")"
  pm rm -f -t 5 marina-volume >/dev/null
  pm volume rm -f marina-test-data >/dev/null
fi

mkdir -p ./readonly-data
chmod 755 ./readonly-data
out=$(timeout 60 "${PM[@]}" run --name marina-readonly --network none \
  --user 65532:65532 -v ./readonly-data:/data:Z marina-distribution 2>&1) && rc=0 || rc=$?
if [ "$rc" != 0 ] && grep -q 'opening storage folder' <<<"$out" && grep -qi 'permission denied' <<<"$out"; then
  ok "--user 65532 on a folder owned by root: marina stops (exit $rc) naming the folder and 'Permission denied'"
  note "$(grep -m1 'opening storage folder' <<<"$out" | sed 's/^.*ERROR //')"
else
  fail "--user 65532 on a folder owned by root: exit $rc, expected an error naming the folder"
  show_output "$out"
fi
pm rm -f marina-readonly >/dev/null 2>&1 || true
cd "$REPO_ROOT"

MAIN_DONE=1
