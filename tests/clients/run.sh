#!/usr/bin/env bash
# End-to-end tests of marina with real OCI clients: skopeo, buildah, podman, containerd (ctr),
# oras (oras-py), python-dxf and the Docker engine (signed in, over HTTPS).
#
#   bash tests/clients/run.sh
#
# Starts one marina on a free 127.0.0.1 port with fresh storage in a temporary folder, builds
# every input offline (umoci and small scripts), drives each client against its own repository
# (e2e/<client>) and checks digests and bytes at every step. Prints one `ok  - ...` or
# `FAIL - ...` line per check and ends with `N passed, M failed`; exits non-zero on any failure.
#
# Environment:
#   MARINA_BIN     marina binary to test (default: target/release/marina, then target/debug/marina)
#   VENV_PYTHON    python with oras and python-dxf (default: <repo>/.venv/bin/python)
#   KEEP_WORK=1    keep the temporary folder (marina's storage and log, client stores) at the end
#   E2E_ONLY="skopeo podman"   run only these client sections (skopeo buildah podman ctr oras dxf auth;
#                  later ones use what earlier ones pushed)
#
# Needs root (podman, buildah, containerd and dockerd keep their stores in the temporary folder,
# with the vfs/native drivers; nothing under /var/lib, /run or /etc is left behind) and the tools installed by
# scripts/setup.sh. No network other than 127.0.0.1 is used.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=tests/clients/lib.sh
source "$HERE/lib.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/marina-clients.XXXXXX")
RESULTS=$WORK/results
MARINA_LOG=$WORK/marina.log
: >"$RESULTS"
mkdir -p "$WORK/tmp"
export TMPDIR=$WORK/tmp   # clients' large temporary files stay in the work folder too
export RESULTS WORK
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ left in tests/clients
START_SECONDS=$SECONDS
MAIN_DONE=0
MARINA_PID=
CONTAINERD_PID=

TOOL_TIMEOUT=180   # seconds any single client command may take

# ---- teardown and summary --------------------------------------------------------------------

stop_pid() { # stop_pid PID NAME: TERM, then KILL after 10 s
  local pid=$1 i
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    note "$2 (pid $pid) ignored SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

remove_work() {
  # Never delete through a mount point that a client may have left inside the work folder.
  local mounts
  mounts=$(awk -v w="$WORK" 'index($5, w "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
  if [ -n "$mounts" ]; then
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done <<<"$mounts"
    if awk -v w="$WORK" 'index($5, w "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
      note "mounts remain under $WORK; leaving it in place"
      return 0
    fi
  fi
  rm -rf -- "$WORK"
}

on_exit() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if [ "$MAIN_DONE" != 1 ]; then
    fail "run.sh stopped early (exit $rc); see the messages above"
  fi
  stop_pid "${MIRROR_PID:-}" mirror
  stop_pid "$CONTAINERD_PID" containerd
  stop_pid "$DOCKERD_PID" dockerd
  stop_pid "$AUTH_PID" "marina (auth)"
  stop_pid "$MARINA_PID" marina
  tally
  if [ "${FAILED:-0}" != 0 ] && [ -s "$MARINA_LOG" ]; then
    local lines
    lines=$(grep -E 'status=[45][0-9][0-9]' "$MARINA_LOG" | grep -vE 'method=HEAD .*status=404' | tail -n 25)
    if [ -n "$lines" ]; then
      note "marina log, last requests answered with an error status (HEAD 404s left out):"
      sed 's/^/#   /' <<<"$lines"
    fi
    lines=$(grep -E ' (WARN|ERROR) ' "$MARINA_LOG" | tail -n 10)
    if [ -n "$lines" ]; then
      note "marina log, last warnings and errors:"
      sed 's/^/#   /' <<<"$lines"
    fi
  fi
  if [ "${KEEP_WORK:-0}" = 1 ]; then
    note "work folder kept: $WORK"
  else
    if [ "${FAILED:-0}" != 0 ]; then note "rerun with KEEP_WORK=1 to keep marina's log and storage"; fi
    remove_work
  fi
  summarize_and_exit
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# abort: stop after a failure already recorded (prerequisites missing).
abort() {
  MAIN_DONE=1
  exit 1
}

# run_section NAME: runs section_NAME in a subshell without errexit: every outcome that matters
# is an explicit check, a failed check does not stop the section, and a failed step stops only
# what depends on it (`step ... || return 0`). The other clients run whatever happens.
run_section() {
  if [ -n "${E2E_ONLY:-}" ] && [[ " $E2E_ONLY " != *" $1 "* ]]; then
    note "---- $1: not run (E2E_ONLY=$E2E_ONLY)"
    return 0
  fi
  note "---- $1"
  set +e
  ( "section_$1" )
  set -e
}

# ---- prerequisites ---------------------------------------------------------------------------

# need CMD APT_PACKAGE: FAIL (naming what to install) when CMD is missing.
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  fail "$1 not found: run scripts/setup.sh (apt install $2)"
  return 1
}

missing_core=0
for spec in curl:curl jq:jq umoci:umoci python3:python3 tar:tar sha256sum:coreutils cmp:diffutils \
            timeout:coreutils unshare:util-linux; do
  need "${spec%%:*}" "${spec#*:}" || missing_core=1
done
[ "$missing_core" = 0 ] || abort
if [ "$(id -u)" != 0 ]; then
  fail "run.sh must run as root (podman, buildah and containerd keep root-owned stores)"
  abort
fi

if [ -z "${MARINA_BIN:-}" ]; then
  for candidate in "$REPO_ROOT/target/release/marina" "$REPO_ROOT/target/debug/marina"; do
    if [ -x "$candidate" ]; then MARINA_BIN=$candidate; break; fi
  done
fi
if [ -z "${MARINA_BIN:-}" ] || [ ! -x "$MARINA_BIN" ]; then
  fail "marina binary not found (${MARINA_BIN:-none}): run cargo build --release or set MARINA_BIN"
  abort
fi

VENV_PYTHON=${VENV_PYTHON:-$REPO_ROOT/.venv/bin/python}
have_oras=0
have_dxf=0
if [ ! -x "$VENV_PYTHON" ]; then
  fail "python venv not found at $VENV_PYTHON: run scripts/setup.sh (pip install oras python-dxf into .venv)"
else
  if "$VENV_PYTHON" -c 'import oras.client, oras.oci' 2>/dev/null; then have_oras=1; else
    fail "oras (oras-py) not importable by $VENV_PYTHON: run scripts/setup.sh (pip install oras)"
  fi
  if "$VENV_PYTHON" -c 'from dxf import DXF' 2>/dev/null; then have_dxf=1; else
    fail "python-dxf not importable by $VENV_PYTHON: run scripts/setup.sh (pip install python-dxf)"
  fi
fi

have_skopeo=0; need skopeo skopeo && have_skopeo=1
have_buildah=0; need buildah buildah && have_buildah=1
have_podman=0; need podman podman && have_podman=1
have_ctr=0; need containerd containerd && need ctr containerd && have_ctr=1
have_docker=0; need dockerd docker.io && need openssl openssl && have_docker=1
# Debian's client, of the same release as its dockerd (another docker may come first on PATH).
DOCKER_BIN=/usr/bin/docker; [ -x "$DOCKER_BIN" ] || DOCKER_BIN=docker

# ---- marina ----------------------------------------------------------------------------------

free_port() {
  python3 - <<'EOF'
import socket
while True:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    if port != 5000:
        print(port)
        break
EOF
}

start_marina() {
  local attempt i
  for attempt in 1 2 3; do
    PORT=$(free_port) && [[ "$PORT" =~ ^[0-9]+$ ]] || { note "could not pick a free port"; return 1; }
    # Every setting is given explicitly; a MARINA_CONFIG file in the caller's environment is ignored.
    env -u MARINA_CONFIG "$MARINA_BIN" --listen "127.0.0.1:$PORT" \
      --storage-driver filesystem --storage-path "$WORK/marina-data" \
      --delete-enabled true --log-level info --log-format text >"$MARINA_LOG" 2>&1 &
    MARINA_PID=$!
    for i in $(seq 150); do
      if [ "$(reg_curl -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v2/" 2>/dev/null)" = 200 ]; then
        return 0
      fi
      kill -0 "$MARINA_PID" 2>/dev/null || break
      sleep 0.1
    done
    note "marina did not answer on port $PORT (attempt $attempt):"
    tail -n 5 "$MARINA_LOG" | sed 's/^/#   /'
    stop_pid "$MARINA_PID" marina
    MARINA_PID=
  done
  return 1
}

if start_marina; then
  ok "marina ($MARINA_BIN) answers GET /v2/ on 127.0.0.1:$PORT"
else
  fail "marina ($MARINA_BIN) did not start"
  abort
fi
REG=127.0.0.1:$PORT
BASE=http://$REG

# ---- client configuration (all in the work folder) -------------------------------------------

POLICY=$WORK/policy.json
REGCONF=$WORK/registries.conf
cat >"$POLICY" <<'EOF'
{ "default": [ { "type": "insecureAcceptAnything" } ] }
EOF
cat >"$REGCONF" <<EOF
unqualified-search-registries = []
[[registry]]
location = "$REG"
insecure = true
EOF
# network_config_dir: buildah takes a lock in /etc/cni/net.d otherwise.
cat >"$WORK/containers.conf" <<EOF
[engine]
events_logger = "none"
cgroup_manager = "cgroupfs"
[network]
network_config_dir = "$WORK/cni"
EOF
cat >"$WORK/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$WORK/containers-default/root"
runroot = "$WORK/containers-default/run"
EOF
export REGISTRIES_CONFIG_PATH=$REGCONF CONTAINERS_REGISTRIES_CONF=$REGCONF
export CONTAINERS_CONF=$WORK/containers.conf CONTAINERS_STORAGE_CONF=$WORK/storage.conf
export REGISTRY_AUTH_FILE=$WORK/auth.json
echo '{}' >"$REGISTRY_AUTH_FILE"

# skopeo, buildah and podman keep a blob-location cache in /var/lib/containers/cache when run as
# root, with no option to move it. Run them in a private mount namespace where a folder of the
# work folder, one per client, is bound over /var/lib/containers (or over /var/lib when that does
# not exist): each run starts from empty caches, the cache persists across one client's commands
# (podman's push finds where its pull got the blobs, and mounts them), and nothing global changes.
CACHE_MASK=
if unshare --mount --propagation private true 2>/dev/null; then
  if [ -d /var/lib/containers ]; then CACHE_MASK=/var/lib/containers; else CACHE_MASK=/var/lib; fi
else
  note "unshare --mount unavailable: skopeo, buildah and podman will use /var/lib/containers/cache"
fi
masked() { # masked NAME CMD...: CMD with a time limit and $WORK/varlib/NAME over $CACHE_MASK
  local dir=$WORK/varlib/$1
  shift
  if [ -n "$CACHE_MASK" ]; then
    mkdir -p "$dir"
    timeout -k 5 "$TOOL_TIMEOUT" unshare --mount --propagation private -- sh -c \
      'mount --bind "$0" "$1" && shift && exec "$@"' "$dir" "$CACHE_MASK" "$@"
  else
    timeout -k 5 "$TOOL_TIMEOUT" "$@"
  fi
}
sk() { masked skopeo skopeo --policy "$POLICY" --registries-conf "$REGCONF" "$@"; }
bh() {
  masked buildah buildah --root "$WORK/buildah/root" --runroot "$WORK/buildah/run" \
    --storage-driver vfs --registries-conf "$REGCONF" "$@"
}
pm() {
  masked podman podman --root "$WORK/podman/root" --runroot "$WORK/podman/run" \
    --storage-driver vfs --tmpdir "$WORK/podman/tmp" --events-backend none \
    --cgroup-manager cgroupfs --network-config-dir "$WORK/cni" \
    --volumepath "$WORK/podman/volumes" "$@"
}
CTR_SOCK=$WORK/containerd/containerd.sock
c() { timeout -k 5 "$TOOL_TIMEOUT" ctr --address "$CTR_SOCK" --namespace e2e "$@"; }
export CONTAINERD_SNAPSHOTTER=native

case "$(uname -m)" in
  x86_64) HOST_ARCH=amd64 ;;
  aarch64) HOST_ARCH=arm64 ;;
  *) HOST_ARCH=$(uname -m) ;;
esac

# ---- inputs, built offline -------------------------------------------------------------------
# OCI layout $L with:
#   multi   3 layers (one of 3 MiB of random bytes), linux/$HOST_ARCH
#   solo    1 layer, only used for the delete test
#   amd64, arm64   1 layer each, with their platform in the config
#   index   OCI image index of amd64 and arm64

L=$WORK/oci
build_inputs() {
  local s=$WORK/src
  mkdir -p "$s/one" "$s/two" "$s/three" "$s/solo" "$s/amd64" "$s/arm64"
  printf 'first layer\n' >"$s/one/one.txt"
  printf 'marina e2e\n' >"$s/one/motd"
  python3 "$HERE/make_image.py" random-file "$s/two/blob.bin" 3145728 1
  printf 'third layer\n' >"$s/three/three.txt"
  printf 'only here to be deleted\n' >"$s/solo/solo.txt"
  printf 'amd64\n' >"$s/amd64/platform.txt"
  printf 'arm64\n' >"$s/arm64/platform.txt"

  umoci init --layout "$L"
  umoci new --image "$L:base"
  umoci insert --image "$L:base" --tag multi "$s/one" /etc/e2e
  umoci insert --image "$L:multi" "$s/two" /opt/e2e
  umoci insert --image "$L:multi" "$s/three" /usr/share/e2e
  umoci config --image "$L:multi" --os linux --architecture "$HOST_ARCH" \
    --config.cmd /bin/e2e --config.label org.example.e2e=multi
  umoci insert --image "$L:base" --tag solo "$s/solo" /solo
  umoci config --image "$L:solo" --os linux --architecture "$HOST_ARCH"
  local arch
  for arch in amd64 arm64; do
    umoci insert --image "$L:base" --tag "$arch" "$s/$arch" /etc/platform
    umoci config --image "$L:$arch" --os linux --architecture "$arch" \
      --config.label "org.example.e2e=$arch"
  done
  umoci rm --image "$L:base"
  python3 "$HERE/make_image.py" index "$L" index amd64 arm64 >/dev/null
}

step "inputs: OCI layout built offline with umoci (multi, solo, amd64, arm64, index)" build_inputs || abort
D_MULTI=$(layout_digest "$L" multi)
D_SOLO=$(layout_digest "$L" solo)
D_AMD64=$(layout_digest "$L" amd64)
D_ARM64=$(layout_digest "$L" arm64)
D_INDEX=$(layout_digest "$L" index)
M_MULTI=$(layout_blob "$L" "$D_MULTI")
M_SOLO=$(layout_blob "$L" "$D_SOLO")
M_AMD64=$(layout_blob "$L" "$D_AMD64")
M_ARM64=$(layout_blob "$L" "$D_ARM64")
M_INDEX=$(layout_blob "$L" "$D_INDEX")
MULTI_LAYERS=$(jq '.layers | length' "$M_MULTI")
[ "$MULTI_LAYERS" -ge 2 ] || { fail "inputs: multi has $MULTI_LAYERS layers, expected 3"; abort; }
note "multi=$D_MULTI ($MULTI_LAYERS layers) index=$D_INDEX amd64=$D_AMD64 arm64=$D_ARM64"

# ---- skopeo: e2e/skopeo ----------------------------------------------------------------------

section_skopeo() {
  local R=$REG/e2e/skopeo d arch want

  step "skopeo copy --preserve-digests oci:multi -> docker://e2e/skopeo:multi" \
    sk copy --preserve-digests --dest-tls-verify=false "oci:$L:multi" "docker://$R:multi" || return 0
  check_manifest_pushed "skopeo: e2e/skopeo:multi has the layout's manifest digest and bytes" \
    e2e/skopeo multi "$D_MULTI" "$M_MULTI"
  check_blobs_in_registry "skopeo: e2e/skopeo config and layers are byte-identical to the layout" \
    e2e/skopeo "$M_MULTI" "$L"

  if sk inspect --raw --tls-verify=false "docker://$R:multi" >"$WORK/sk-raw" 2>"$WORK/err"; then
    check_files_equal "skopeo inspect --raw returns exactly the pushed manifest" "$M_MULTI" "$WORK/sk-raw"
  else
    fail "skopeo inspect --raw e2e/skopeo:multi"; show_output "$(cat "$WORK/err")"
  fi
  if sk inspect --tls-verify=false "docker://$R:multi" >"$WORK/sk-inspect.json" 2>"$WORK/err"; then
    check_eq "skopeo inspect: Digest" "$D_MULTI" "$(jq -r .Digest "$WORK/sk-inspect.json")"
    check_eq "skopeo inspect: Layers" "$(jq -c '[.layers[].digest]' "$M_MULTI")" \
      "$(jq -c .Layers "$WORK/sk-inspect.json")"
    check_eq "skopeo inspect: platform and label from the config" "linux/$HOST_ARCH multi" \
      "$(jq -r '"\(.Os)/\(.Architecture) \(.Labels["org.example.e2e"])"' "$WORK/sk-inspect.json")"
  else
    fail "skopeo inspect e2e/skopeo:multi"; show_output "$(cat "$WORK/err")"
  fi
  if sk inspect --config --raw --tls-verify=false "docker://$R:multi" >"$WORK/sk-config" 2>"$WORK/err"; then
    check_files_equal "skopeo inspect --config --raw returns the config blob" \
      "$(layout_blob "$L" "$(jq -r .config.digest "$M_MULTI")")" "$WORK/sk-config"
  else
    fail "skopeo inspect --config --raw e2e/skopeo:multi"; show_output "$(cat "$WORK/err")"
  fi

  # Out to dir: and back in.
  if step "skopeo copy --preserve-digests docker://e2e/skopeo:multi -> dir:" \
      sk copy --preserve-digests --src-tls-verify=false "docker://$R:multi" "dir:$WORK/sk-dir"; then
    check_eq "skopeo dir: manifest.json digest equals the original" "$D_MULTI" \
      "$(file_digest "$WORK/sk-dir/manifest.json")"
    local bad=()
    for d in $(manifest_blobs "$M_MULTI"); do
      cmp -s "$WORK/sk-dir/$(hex_of "$d")" "$(layout_blob "$L" "$d")" || bad+=("$d")
    done
    check_eq "skopeo dir: config and layer files byte-identical to the layout" "" "${bad[*]}"
    step "skopeo copy --preserve-digests dir: -> docker://e2e/skopeo:fromdir" \
      sk copy --preserve-digests --dest-tls-verify=false "dir:$WORK/sk-dir" "docker://$R:fromdir" &&
      check_manifest_pushed "skopeo: e2e/skopeo:fromdir (via dir:) keeps the original digest" \
        e2e/skopeo fromdir "$D_MULTI" "$M_MULTI"
  fi

  # Out to a new OCI layout.
  if step "skopeo copy --preserve-digests docker://e2e/skopeo:multi -> oci:" \
      sk copy --preserve-digests --src-tls-verify=false "docker://$R:multi" "oci:$WORK/sk-oci:roundtrip"; then
    check_eq "skopeo oci: round-trip manifest digest equals the original" "$D_MULTI" \
      "$(layout_digest "$WORK/sk-oci" roundtrip 2>/dev/null || true)"
    local bad=()
    for d in $D_MULTI $(manifest_blobs "$M_MULTI"); do
      cmp -s "$(layout_blob "$WORK/sk-oci" "$d")" "$(layout_blob "$L" "$d")" || bad+=("$d")
    done
    check_eq "skopeo oci: manifest, config and layers byte-identical after the round trip" "" "${bad[*]}"
  fi

  # Multi-platform index, with --all.
  if step "skopeo copy --all --preserve-digests oci:index -> docker://e2e/skopeo:index" \
      sk copy --all --preserve-digests --dest-tls-verify=false "oci:$L:index" "docker://$R:index"; then
    check_manifest_pushed "skopeo: e2e/skopeo:index has the layout's index digest and bytes" \
      e2e/skopeo index "$D_INDEX" "$M_INDEX"
    for arch in amd64 arm64; do
      if [ "$arch" = amd64 ]; then d=$D_AMD64; else d=$D_ARM64; fi
      check_manifest_pushed "skopeo: index child $arch is served by digest with the same bytes" \
        e2e/skopeo "$d" "$d" "$(layout_blob "$L" "$d")"
      check_blobs_in_registry "skopeo: index child $arch config and layer identical to the layout" \
        e2e/skopeo "$(layout_blob "$L" "$d")" "$L"
    done
    if sk inspect --raw --tls-verify=false "docker://$R:index" >"$WORK/sk-index-raw" 2>"$WORK/err"; then
      check_files_equal "skopeo inspect --raw of the index returns exactly the pushed index" \
        "$M_INDEX" "$WORK/sk-index-raw"
    else
      fail "skopeo inspect --raw e2e/skopeo:index"; show_output "$(cat "$WORK/err")"
    fi
    # skopeo reports the index's own Digest, and the chosen instance's config and layers.
    want=$(sk --override-os linux --override-arch arm64 inspect --tls-verify=false \
      "docker://$R:index" 2>"$WORK/err" | jq -c '[.Digest, .Architecture, .Layers]' || true)
    check_eq "skopeo inspect --override-arch arm64 of the index picks the arm64 image" \
      "$(jq -c --arg d "$D_INDEX" '[$d, "arm64", [.layers[].digest]]' "$M_ARM64")" "$want"
    if step "skopeo copy --all --preserve-digests docker://e2e/skopeo:index -> oci:" \
        sk copy --all --preserve-digests --src-tls-verify=false "docker://$R:index" "oci:$WORK/sk-oci:index"; then
      check_eq "skopeo oci: index digest after the round trip equals the original" "$D_INDEX" \
        "$(layout_digest "$WORK/sk-oci" index 2>/dev/null || true)"
      local bad=()
      for d in $D_INDEX $D_AMD64 $D_ARM64 $(manifest_blobs "$M_AMD64") $(manifest_blobs "$M_ARM64"); do
        cmp -s "$(layout_blob "$WORK/sk-oci" "$d")" "$(layout_blob "$L" "$d")" || bad+=("$d")
      done
      check_eq "skopeo oci: index, both manifests and their blobs byte-identical after --all" "" "${bad[*]}"
    fi
  fi

  # list-tags and delete.
  step "skopeo copy --preserve-digests oci:solo -> docker://e2e/skopeo:solo" \
    sk copy --preserve-digests --dest-tls-verify=false "oci:$L:solo" "docker://$R:solo" &&
    check_manifest_pushed "skopeo: e2e/skopeo:solo has the layout's digest" e2e/skopeo solo "$D_SOLO" "$M_SOLO"
  check_eq "skopeo list-tags e2e/skopeo" '["fromdir","index","multi","solo"]' \
    "$(sk list-tags --tls-verify=false "docker://$R" 2>"$WORK/err" | jq -c '.Tags | sort' || true)"
  if step "skopeo delete docker://e2e/skopeo:solo" sk delete --tls-verify=false "docker://$R:solo"; then
    check_eq "after delete: GET manifest by digest answers 404" 404 \
      "$(reg_status GET "/v2/e2e/skopeo/manifests/$D_SOLO")"
    check_eq "after delete: GET manifest by tag solo answers 404" 404 \
      "$(reg_status GET /v2/e2e/skopeo/manifests/solo)"
    step_fails "after delete: skopeo inspect e2e/skopeo:solo fails" \
      sk inspect --raw --tls-verify=false "docker://$R:solo"
    check_eq "after delete: skopeo list-tags no longer lists solo" '["fromdir","index","multi"]' \
      "$(sk list-tags --tls-verify=false "docker://$R" 2>"$WORK/err" | jq -c '.Tags | sort' || true)"
    check_eq "after delete: e2e/skopeo:multi is untouched" "$D_MULTI" \
      "$(reg_manifest_digest e2e/skopeo multi 2>/dev/null || true)"
  fi
}

# ---- buildah: e2e/buildah --------------------------------------------------------------------

buildah_image() { # buildah_image ARCH: builds localhost/e2e-buildah:ARCH FROM scratch
  local arch=$1 src=$WORK/bsrc/$1 ctr
  mkdir -p "$src/data/nested"
  printf 'hello from buildah, %s\n' "$arch" >"$src/hello.txt"
  printf 'nested file\n' >"$src/data/nested/note.txt"
  python3 "$HERE/make_image.py" random-file "$src/data/blob.bin" 524288 "$([ "$arch" = amd64 ] && echo 2 || echo 3)"
  ctr=$(bh from scratch)
  bh copy "$ctr" "$src" /app >/dev/null
  bh config --os linux --arch "$arch" --label org.example.e2e=buildah --cmd /app/hello.txt "$ctr"
  bh commit --quiet --format oci --rm "$ctr" "localhost/e2e-buildah:$arch" >/dev/null
}

section_buildah() {
  local R=$REG/e2e/buildah d arch bad=() platforms

  step "buildah from scratch + copy + config + commit (linux/amd64)" buildah_image amd64 || return 0
  step "buildah from scratch + copy + config + commit (linux/arm64)" buildah_image arm64 || return 0

  step "buildah push localhost/e2e-buildah:amd64 -> docker://e2e/buildah:v1" \
    bh push --signature-policy "$POLICY" --tls-verify=false --digestfile "$WORK/bh-v1.digest" \
    localhost/e2e-buildah:amd64 "docker://$R:v1" || return 0
  d=$(cat "$WORK/bh-v1.digest")
  if check_manifest_pushed "buildah: e2e/buildah:v1 matches the digest buildah reported" e2e/buildah v1 "$d"; then
    cp "$WORK/last-manifest" "$WORK/bh-v1.json"
    check_blobs_in_registry "buildah: e2e/buildah:v1 config and layers hash to their digests" \
      e2e/buildah "$WORK/bh-v1.json"
    if sk inspect --raw --tls-verify=false "docker://$R:v1" >"$WORK/bh-v1.skopeo" 2>"$WORK/err"; then
      check_files_equal "buildah: skopeo inspect --raw of e2e/buildah:v1 equals the served manifest" \
        "$WORK/bh-v1.json" "$WORK/bh-v1.skopeo"
    else
      fail "skopeo inspect --raw e2e/buildah:v1"; show_output "$(cat "$WORK/err")"
    fi
    # The single layer holds exactly the files that were copied in.
    mkdir -p "$WORK/bh-v1-rootfs"
    if reg_get_blob e2e/buildah "$(jq -r '.layers[-1].digest' "$WORK/bh-v1.json")" "$WORK/bh-v1-layer" &&
        tar -xf "$WORK/bh-v1-layer" -C "$WORK/bh-v1-rootfs" &&
        diff -r "$WORK/bsrc/amd64" "$WORK/bh-v1-rootfs/app" >"$WORK/err" 2>&1; then
      ok "buildah: the pushed layer unpacks to exactly the files given to buildah copy"
    else
      fail "buildah: the pushed layer does not unpack to the files given to buildah copy"
      show_output "$(cat "$WORK/err")"
    fi
    reg_get_blob e2e/buildah "$(jq -r .config.digest "$WORK/bh-v1.json")" "$WORK/bh-v1-config" || true
    check_eq "buildah: pushed config says linux/amd64" "linux/amd64" \
      "$(jq -r '"\(.os)/\(.architecture)"' "$WORK/bh-v1-config" 2>/dev/null || true)"
  fi

  # Manifest list of both images, pushed with --all.
  step "buildah manifest create e2e-buildah-list" bh manifest create e2e-buildah-list || return 0
  for arch in amd64 arm64; do
    step "buildah manifest add e2e-buildah-list localhost/e2e-buildah:$arch" \
      bh manifest add e2e-buildah-list "containers-storage:localhost/e2e-buildah:$arch" || return 0
  done
  step "buildah manifest push --all e2e-buildah-list -> docker://e2e/buildah:list" \
    bh manifest push --signature-policy "$POLICY" --all --tls-verify=false \
    --digestfile "$WORK/bh-list.digest" e2e-buildah-list "docker://$R:list" || return 0
  d=$(cat "$WORK/bh-list.digest")
  check_manifest_pushed "buildah: e2e/buildah:list matches the digest buildah reported" e2e/buildah list "$d" || return 0
  cp "$WORK/last-manifest" "$WORK/bh-list.json"
  platforms=$(jq -c '[.manifests[] | "\(.platform.os)/\(.platform.architecture)"] | sort' "$WORK/bh-list.json")
  check_eq "buildah: the pushed list has both platforms" '["linux/amd64","linux/arm64"]' "$platforms"
  local i n
  n=$(jq '.manifests | length' "$WORK/bh-list.json")
  for ((i = 0; i < n; i++)); do
    d=$(jq -r ".manifests[$i].digest" "$WORK/bh-list.json")
    arch=$(jq -r ".manifests[$i].platform.architecture" "$WORK/bh-list.json")
    check_manifest_pushed "buildah: list entry $arch is served by digest" e2e/buildah "$d" "$d" || continue
    cp "$WORK/last-manifest" "$WORK/bh-child.json"
    check_eq "buildah: list entry $arch has the size given in the list" \
      "$(jq -r ".manifests[$i].size" "$WORK/bh-list.json")" "$(stat -c %s "$WORK/bh-child.json")"
    check_blobs_in_registry "buildah: list entry $arch config and layers hash to their digests" \
      e2e/buildah "$WORK/bh-child.json"
    reg_get_blob e2e/buildah "$(jq -r .config.digest "$WORK/bh-child.json")" "$WORK/bh-child-config" || true
    check_eq "buildah: list entry $arch config says linux/$arch" "linux/$arch" \
      "$(jq -r '"\(.os)/\(.architecture)"' "$WORK/bh-child-config" 2>/dev/null || true)"
  done
}

# ---- podman: e2e/podman ----------------------------------------------------------------------

# podman_repush SRC_REF DST_REF EXPECTED_DIGEST MANIFEST_FILE [PULL_OPTIONS...]
podman_repush() {
  local src=$1 dst=$2 want=$3 manifest=$4 from mounts nlayers got dst_repo dst_tag
  shift 4
  dst_repo=${dst#"$REG/"}
  dst_tag=${dst_repo##*:}
  dst_repo=${dst_repo%:*}
  step "podman pull ${*:+$* }${src#"$REG/"}" pm pull --signature-policy "$POLICY" --tls-verify=false "$@" "$src" || return 0
  # .Digest is the digest the image was pulled by (the index's, for an index); the instance's
  # manifest digest is among RepoDigests.
  pm image inspect "$src" >"$WORK/pm-inspect.json" 2>"$WORK/err" || true
  got=$(jq -r --arg w "$want" '.[0] | [.Digest, .RepoDigests[]] | map(select(endswith($w))) | length' \
    "$WORK/pm-inspect.json" 2>/dev/null || echo 0)
  check_eq "podman: pulled ${src#"$REG/"} is known by manifest digest ${want:0:19}..." yes \
    "$([ "${got:-0}" -gt 0 ] && echo yes || echo "no ($(jq -c '.[0] | [.Digest, .RepoDigests]' "$WORK/pm-inspect.json" 2>/dev/null))")"
  check_eq "podman: pulled ${src#"$REG/"} has the expected platform and config" \
    "linux/$(jq -r .architecture "$(layout_blob "$L" "$(jq -r .config.digest "$manifest")")") $(jq -r .config.digest "$manifest")" \
    "$(jq -r '.[0] | "\(.Os)/\(.Architecture) sha256:\(.Id)"' "$WORK/pm-inspect.json" 2>/dev/null)"
  from=$(log_lines)
  step "podman push ${src#"$REG/"} -> ${dst#"$REG/"}" pm push --signature-policy "$POLICY" \
    --tls-verify=false --digestfile "$WORK/pm.digest" "$src" "docker://$dst" || return 0
  check_manifest_pushed "podman: ${dst#"$REG/"} matches the digest podman reported" \
    "$dst_repo" "$dst_tag" "$(cat "$WORK/pm.digest")" || return 0
  cp "$WORK/last-manifest" "$WORK/pm-pushed.json"
  # Pushing from containers-storage re-serializes the manifest (umoci's ends with a newline,
  # Go's encoder does not), so the manifest digest may change; config and layers must not.
  check_eq "podman: ${dst#"$REG/"} references the original config and layers (same digests, sizes, types)" \
    "$(jq -cS '{config, layers}' "$manifest")" "$(jq -cS '{config, layers}' "$WORK/pm-pushed.json")"
  if [ "$(cat "$WORK/pm.digest")" = "$want" ]; then note "podman kept the original manifest bytes"; fi
  check_blobs_in_registry "podman: ${dst#"$REG/"} config and layers byte-identical to the layout" \
    "$dst_repo" "$WORK/pm-pushed.json" "$L"
  # containers/image mounts blobs it knows from another repository of the same registry:
  # POST /v2/e2e/podman/blobs/uploads/?mount=...&from=e2e/skopeo, answered 201 Created.
  mounts=$(log_count 'method=POST route="/v2/<name>/blobs/uploads/" user="[^"]*" status=201' "$from")
  nlayers=$(jq '.layers | length' "$manifest")
  if [ "$mounts" -ge "$nlayers" ]; then
    ok "podman: cross-repository mount used for the layers ($mounts POST .../blobs/uploads/ answered 201, $nlayers layers)"
  else
    fail "podman: expected $nlayers cross-repository mounts (POST .../blobs/uploads/ answered 201), saw $mounts"
    tail -n +"$((from + 1))" "$MARINA_LOG" | grep -E 'method=(POST|PUT|PATCH|HEAD)' | head -n 20 | sed 's/^/#   /'
  fi
}

section_podman() {
  podman_repush "$REG/e2e/skopeo:multi" "$REG/e2e/podman:multi" "$D_MULTI" "$M_MULTI"
  podman_repush "$REG/e2e/skopeo:index" "$REG/e2e/podman:arm64" "$D_ARM64" "$M_ARM64" --platform linux/arm64
}

# ---- containerd (ctr): e2e/ctr ---------------------------------------------------------------

start_containerd() {
  local d=$WORK/containerd i
  mkdir -p "$d"
  cat >"$d/config.toml" <<EOF
version = 2
root = "$d/root"
state = "$d/state"
temp = "$d/tmp"
# Only what image import, push and pull need; nothing writes outside $d.
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.overlayfs",
  "io.containerd.snapshotter.v1.zfs",
]
[grpc]
  address = "$CTR_SOCK"
[debug]
  level = "info"
EOF
  mkdir -p "$d/tmp"
  containerd --config "$d/config.toml" >"$d/containerd.log" 2>&1 &
  CONTAINERD_PID=$!
  for i in $(seq 100); do
    if [ -S "$CTR_SOCK" ] && c version >/dev/null 2>&1; then return 0; fi
    kill -0 "$CONTAINERD_PID" 2>/dev/null || break
    sleep 0.1
  done
  tail -n 10 "$d/containerd.log" | sed 's/^/#   /'
  return 1
}

# ctr_image_digest NAME: target digest of a containerd image.
ctr_image_digest() { c images ls | awk -v n="$1" '$1 == n { print $3 }'; }

# ctr_check_content DESC DIGEST...: each blob in containerd's content store hashes to its digest.
ctr_check_content() {
  local desc=$1 d bad=()
  shift
  for d in "$@"; do
    if ! c content get "$d" >"$WORK/ctr-blob" 2>/dev/null; then
      bad+=("$d: missing")
    elif [ "$(file_digest "$WORK/ctr-blob")" != "$d" ]; then
      bad+=("$d: hashes to $(file_digest "$WORK/ctr-blob")")
    fi
  done
  if [ ${#bad[@]} -eq 0 ]; then ok "$desc ($# blobs)"; else fail "$desc: ${bad[*]}"; fi
}

section_ctr() {
  local R=$REG/e2e/ctr d arch bv1

  tar -C "$L" -cf "$WORK/oci.tar" oci-layout index.json blobs
  step "ctr images import (OCI archive of the layout, --all-platforms)" \
    c images import --base-name "$R" --all-platforms --no-unpack "$WORK/oci.tar" || return 0
  check_eq "ctr: imported e2e/ctr:multi has the layout's digest" "$D_MULTI" "$(ctr_image_digest "$R:multi")"
  check_eq "ctr: imported e2e/ctr:index has the layout's digest" "$D_INDEX" "$(ctr_image_digest "$R:index")"

  if step "ctr images push --plain-http e2e/ctr:multi" c images push --plain-http "$R:multi"; then
    check_manifest_pushed "ctr: e2e/ctr:multi has the layout's manifest digest and bytes" \
      e2e/ctr multi "$D_MULTI" "$M_MULTI"
    check_blobs_in_registry "ctr: e2e/ctr:multi config and layers byte-identical to the layout" \
      e2e/ctr "$M_MULTI" "$L"
  fi
  if step "ctr images push --plain-http e2e/ctr:index (all platforms)" c images push --plain-http "$R:index"; then
    check_manifest_pushed "ctr: e2e/ctr:index has the layout's index digest and bytes" \
      e2e/ctr index "$D_INDEX" "$M_INDEX"
    for arch in amd64 arm64; do
      if [ "$arch" = amd64 ]; then d=$D_AMD64; else d=$D_ARM64; fi
      check_manifest_pushed "ctr: index child $arch is served by digest with the layout's bytes" \
        e2e/ctr "$d" "$d" "$(layout_blob "$L" "$d")"
      check_blobs_in_registry "ctr: index child $arch config and layer identical to the layout" \
        e2e/ctr "$(layout_blob "$L" "$d")" "$L"
    done
  fi

  # Pull back what ctr pushed, after removing it and collecting its content.
  step "ctr images rm --sync e2e/ctr:multi" c images rm --sync "$R:multi"
  if c content get "$(jq -r '.layers[1].digest' "$M_MULTI")" >/dev/null 2>&1; then
    note "containerd kept the removed image's content; the pull below may not download it"
  fi
  if step "ctr images pull --plain-http e2e/ctr:multi" c images pull --plain-http "$R:multi"; then
    check_eq "ctr: pulled e2e/ctr:multi has the original digest" "$D_MULTI" "$(ctr_image_digest "$R:multi")"
    # shellcheck disable=SC2046
    ctr_check_content "ctr: pulled manifest, config and layers hash to their digests" \
      "$D_MULTI" $(manifest_blobs "$M_MULTI")
    local bad=()
    for d in $(manifest_blobs "$M_MULTI"); do
      c content get "$d" 2>/dev/null | cmp -s - "$(layout_blob "$L" "$d")" || bad+=("$d")
    done
    check_eq "ctr: pulled layers byte-identical to the layout" "" "${bad[*]}"
  fi

  # Pull images pushed by the other clients.
  bv1=$(reg_manifest_digest e2e/buildah v1 2>/dev/null || true)
  if [ -n "$bv1" ] && step "ctr images pull --plain-http e2e/buildah:v1" c images pull --plain-http "$REG/e2e/buildah:v1"; then
    check_eq "ctr: pulled e2e/buildah:v1 has the registry's digest" "$bv1" "$(ctr_image_digest "$REG/e2e/buildah:v1")"
    reg_get_manifest e2e/buildah v1 "$WORK/ctr-bv1.json"
    # shellcheck disable=SC2046
    ctr_check_content "ctr: pulled e2e/buildah:v1 manifest and blobs hash to their digests" \
      "$bv1" $(manifest_blobs "$WORK/ctr-bv1.json")
  elif [ -z "$bv1" ]; then
    fail "ctr: e2e/buildah:v1 is not in the registry (buildah section failed), cannot pull it"
  fi
  if step "ctr images pull --plain-http --all-platforms e2e/skopeo:index" \
      c images pull --plain-http --all-platforms "$REG/e2e/skopeo:index"; then
    check_eq "ctr: pulled e2e/skopeo:index has the original index digest" "$D_INDEX" \
      "$(ctr_image_digest "$REG/e2e/skopeo:index")"
    # shellcheck disable=SC2046
    ctr_check_content "ctr: pulled index, both manifests and their blobs hash to their digests" \
      "$D_INDEX" "$D_AMD64" "$D_ARM64" $(manifest_blobs "$M_AMD64") $(manifest_blobs "$M_ARM64")
  fi
}

# ---- oras (oras-py) and python-dxf -----------------------------------------------------------

run_python() { # run_python SCRIPT ARGS...: the script records its own ok/FAIL lines
  local rc=0
  "$VENV_PYTHON" "$HERE/$1" "${@:2}" || rc=$?
  # 0: ran to the end (failures, if any, were recorded); 2: died, and recorded why.
  if [ "$rc" != 0 ] && [ "$rc" != 2 ]; then fail "$1 exited with status $rc"; fi
}

section_oras() {
  mkdir -p "$WORK/oras"
  run_python oras_test.py --registry "$REG" --work "$WORK/oras" \
    --subject-repo e2e/skopeo --subject-ref multi
}

section_dxf() {
  mkdir -p "$WORK/dxf"
  run_python dxf_test.py --registry "$REG" --work "$WORK/dxf" \
    --mount-from e2e/skopeo --mount-digest "$(jq -r '.layers[1].digest' "$M_MULTI")"
}

# ---- credentials over HTTPS: a second marina with TLS, htpasswd, tokens, client certificates ----

# make_pki: a test CA, marina's certificate for 127.0.0.1, and a client certificate for bob (in
# the ci group), laid out as the clients read them: $PKI/trust holds the CA alone (the
# containers tools' --cert-dir), $PKI/mtls the CA and bob's certificate and key.
PKI=$WORK/pki
make_pki() {
  local ssl="openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  mkdir -p "$PKI/trust" "$PKI/mtls" && (
    cd "$PKI" &&
      $ssl -x509 -keyout ca.key -out ca.pem -days 2 -subj "/CN=marina e2e CA" &&
      $ssl -keyout server.key -out server.csr -subj "/CN=127.0.0.1" &&
      openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -out server.pem -extfile <(printf 'subjectAltName=IP:127.0.0.1\n') &&
      $ssl -keyout bob.key -out bob.csr -subj "/CN=bob" &&
      openssl x509 -req -in bob.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -out bob.pem -extfile <(printf 'extendedKeyUsage=clientAuth\n')
  ) >/dev/null 2>&1 || return 1
  cp "$PKI/ca.pem" "$PKI/trust/ca.crt"
  cp "$PKI/ca.pem" "$PKI/mtls/ca.crt"
  cp "$PKI/bob.pem" "$PKI/mtls/bob.cert"
  cp "$PKI/bob.key" "$PKI/mtls/bob.key"
}

AUTH_PID=
start_auth_marina() { # writes the users and rules, starts marina with them on AUTH_REG
  make_pki || return 1
  htpasswd -B -b -c "$WORK/users" alice alice-pw >/dev/null 2>&1 &&
    htpasswd -B -b "$WORK/users" bob bob-pw >/dev/null 2>&1 || return 1
  cat >"$WORK/auth.toml" <<'RULES'
[auth.groups]
ci = ["bob"]

[[auth.access]]
repositories = ["public/**"]
anonymous = true
actions = ["pull"]

[[auth.access]]
repositories = ["team/**"]
users = ["alice"]
groups = ["ci"]
actions = ["pull", "push", "delete"]
RULES
  local port i
  port=$(free_port) || return 1
  env -u MARINA_CONFIG "$MARINA_BIN" --listen "127.0.0.1:$port" --config "$WORK/auth.toml" \
    --storage-path "$WORK/auth-data" --auth-htpasswd "$WORK/users" \
    --tls-cert "$PKI/server.pem" --tls-key "$PKI/server.key" --tls-client-ca "$PKI/ca.pem" \
    >"$WORK/auth-marina.log" 2>&1 &
  AUTH_PID=$!
  AUTH_REG=127.0.0.1:$port
  for i in $(seq 150); do
    [ "$(auth_curl -o /dev/null -w '%{http_code}' "https://$AUTH_REG/v2/" 2>/dev/null)" = 401 ] && return 0
    kill -0 "$AUTH_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
auth_curl() { reg_curl --cacert "$PKI/ca.pem" "$@"; }

section_auth() {
  if start_auth_marina; then
    auth_checks
  else
    fail "marina with --auth-htpasswd and TLS did not start"
    tail -n 5 "$WORK/auth-marina.log" | sed 's/^/#   /'
  fi
  stop_pid "$AUTH_PID" "marina (auth)"
  AUTH_PID=
}

auth_checks() {
  local challenge R=$AUTH_REG/team TRUST=$PKI/trust MTLS=$PKI/mtls
  challenge=$(auth_curl -I "https://$AUTH_REG/v2/" | tr -d '\r' | sed -n 's/^[Ww][Ww][Ww]-[Aa]uthenticate: //p')
  check_eq "anonymous GET /v2/ over HTTPS is challenged for a Bearer token" \
    "Bearer realm=\"https://$AUTH_REG/auth/token\",service=\"marina\"" "$challenge"
  check_eq "plain HTTP is not served on the HTTPS port" 000 \
    "$(reg_curl -o /dev/null -w '%{http_code}' "http://$AUTH_REG/v2/" 2>/dev/null || true)"
  step_fails "skopeo copy without credentials is refused" \
    sk copy --dest-cert-dir "$TRUST" "oci:$L:solo" "docker://$R/skopeo:solo"
  step "skopeo copy --dest-creds alice (the token dance, TLS checked against the test CA)" \
    sk copy --dest-cert-dir "$TRUST" --dest-creds alice:alice-pw "oci:$L:solo" "docker://$R/skopeo:solo" || return 0
  check_eq "skopeo inspect --creds bob (group ci) sees the pushed digest" "$D_SOLO" \
    "$(sk inspect --cert-dir "$TRUST" --creds bob:bob-pw --format '{{.Digest}}' "docker://$R/skopeo:solo")"
  step_fails "skopeo push by alice to public/ is denied (the rules give anonymous pull only)" \
    sk copy --dest-cert-dir "$TRUST" --dest-creds alice:alice-pw "oci:$L:solo" "docker://$AUTH_REG/public/solo:v1"
  step "skopeo copy signed in by bob's client certificate alone (mTLS, no password)" \
    sk copy --dest-cert-dir "$MTLS" --dest-no-creds "oci:$L:solo" "docker://$R/mtls:solo"
  check_eq "marina's log names the certificate's CN for the mTLS push" yes \
    "$(grep -qF 'method=PUT route="/v2/<name>/manifests/<reference>" user="bob" status=201' \
      "$WORK/auth-marina.log" && echo yes || echo no)"
  step_fails "bob's certificate may not push to public/" \
    sk copy --dest-cert-dir "$MTLS" --dest-no-creds "oci:$L:solo" "docker://$AUTH_REG/public/mtls:v1"
  if [ "$have_podman" = 1 ]; then
    export REGISTRY_AUTH_FILE=$WORK/podman-auth.json
    step "podman login as alice" pm login --cert-dir "$TRUST" -u alice -p alice-pw "$AUTH_REG"
    step "podman pull team/skopeo:solo, signed in" pm pull --cert-dir "$TRUST" "$R/skopeo:solo"
    step "podman push team/podman:solo, signed in" \
      pm push --cert-dir "$TRUST" "$R/skopeo:solo" "docker://$R/podman:solo"
    step "podman logout" pm logout "$AUTH_REG"
    step_fails "podman pull after logout is refused" pm pull --cert-dir "$TRUST" "$R/podman:solo"
    unset REGISTRY_AUTH_FILE
  fi
  if [ "$have_buildah" = 1 ]; then
    step "buildah pull --creds bob" bh pull --cert-dir "$TRUST" --creds bob:bob-pw "$R/skopeo:solo"
    step "buildah push --creds bob" bh push --cert-dir "$TRUST" --creds bob:bob-pw \
      "$R/skopeo:solo" "docker://$R/buildah:solo"
  fi
  if [ -n "$CONTAINERD_PID" ]; then
    # ctr talks plain HTTP to loopback hosts unless a hosts.toml says otherwise.
    local hosts=$WORK/ctr-hosts
    mkdir -p "$hosts/$AUTH_REG"
    printf 'server = "https://%s"\n[host."https://%s"]\n  ca = "%s"\n' \
      "$AUTH_REG" "$AUTH_REG" "$PKI/ca.pem" >"$hosts/$AUTH_REG/hosts.toml"
    step "ctr images pull --user alice (HTTPS, the CA in hosts.toml)" \
      c images pull --hosts-dir "$hosts" --user alice:alice-pw "$R/skopeo:solo"
    step_fails "ctr images pull --user with a wrong password is refused" \
      c images pull --hosts-dir "$hosts" --user alice:nope "$R/buildah:solo"
    step "ctr images pull with bob's client certificate (--tlscert, no user)" \
      c images pull --hosts-dir "$hosts" --tlscert "$PKI/bob.pem" --tlskey "$PKI/bob.key" \
      "$R/buildah:solo"
  fi
  if [ "$have_oras" = 1 ] && [ "$have_dxf" = 1 ]; then
    mkdir -p "$WORK/auth-py"
    REQUESTS_CA_BUNDLE=$PKI/ca.pem run_python auth_test.py --registry "$AUTH_REG" \
      --work "$WORK/auth-py" --ca "$PKI/ca.pem"
  fi
  if [ "$have_docker" = 1 ]; then docker_checks; fi
  if grep -qE 'alice-pw|bob-pw' "$WORK/auth-marina.log"; then
    fail "a password reached marina's log"
  else
    ok "no password in marina's log"
  fi
  check_eq "marina's request log names the signed-in user" yes \
    "$(grep -q 'user="alice"' "$WORK/auth-marina.log" && echo yes || echo no)"
}

# ---- the Docker engine: login, build, push and pull against the HTTPS marina -----------------

DOCKERD_PID=
# dockerd with everything in the work folder: its data, state and socket, and /etc/docker (where
# it would keep a key) masked by a folder of ours in a private mount namespace. No bridge, no
# iptables: it only builds, pushes and pulls.
start_dockerd() {
  local dir=$WORK/docker i
  mkdir -p "$dir/etc" "$dir/data" "$dir/exec" "$dir/config"
  unshare --mount --propagation private -- sh -c 'mount --bind "$0" /etc/docker && exec "$@"' \
    "$dir/etc" dockerd --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
    --host "unix://$dir/docker.sock" --storage-driver vfs --iptables=false --bridge=none \
    >"$dir/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for i in $(seq 300); do
    dk version >/dev/null 2>&1 && return 0
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 0.1
  done
  tail -n 5 "$dir/dockerd.log" | sed 's/^/#   /'
  return 1
}
dk() { DOCKER_CONFIG=$WORK/docker/config timeout -k 5 "$TOOL_TIMEOUT" "$DOCKER_BIN" --host "unix://$WORK/docker/docker.sock" "$@"; }

docker_checks() {
  local had_run_docker=0
  [ -e /run/docker ] && had_run_docker=1
  if start_dockerd; then
    docker_steps
  else
    fail "dockerd did not start (log above)"
  fi
  stop_pid "$DOCKERD_PID" dockerd
  DOCKERD_PID=
  # dockerd always makes /run/docker/plugins (its plugin sockets); leave /run as it was.
  if [ "$had_run_docker" = 0 ]; then rmdir /run/docker/plugins /run/docker 2>/dev/null || true; fi
}

docker_steps() {
  local ctx=$WORK/docker/build image=$AUTH_REG/team/docker:v1 id pushed
  mkdir -p "$ctx"
  tar -C "$WORK/src/one" -cf "$WORK/docker/base.tar" . &&
    python3 "$HERE/make_image.py" random-file "$ctx/payload.bin" 1048576 7 &&
    printf 'FROM e2e-base:1\nCOPY payload.bin /payload.bin\nLABEL e2e=docker\n' >"$ctx/Dockerfile"
  step "docker import a base image from a tar" dk import "$WORK/docker/base.tar" e2e-base:1 || return 0
  step "docker build (DOCKER_BUILDKIT=0) an image on it" \
    env DOCKER_BUILDKIT=0 "$DOCKER_BIN" --host "unix://$WORK/docker/docker.sock" build -q -t "$image" "$ctx" || return 0
  id=$(dk image inspect --format '{{.Id}}' "$image")
  step_fails "docker push without login is refused" dk push "$image"
  step_fails "docker login with a wrong password is refused" \
    dk login -u alice --password-stdin "$AUTH_REG" <<<"nope"
  step "docker login as alice (over HTTPS)" dk login -u alice --password-stdin "$AUTH_REG" <<<"alice-pw" || return 0
  step "docker push team/docker:v1" dk push "$image" || return 0
  pushed=$(dk image inspect --format '{{index .RepoDigests 0}}' "$image")
  check_eq "the registry serves the manifest digest docker recorded" "${pushed#*@}" \
    "$(sk inspect --cert-dir "$PKI/trust" --creds alice:alice-pw --format '{{.Digest}}' "docker://$image")"
  step "docker rmi, so the pull below downloads everything" dk rmi "$image" e2e-base:1
  step "docker pull team/docker:v1" dk pull "$image" &&
    check_eq "the pulled image has the built image's ID" "$id" "$(dk image inspect --format '{{.Id}}' "$image")"
  step "docker logout" dk logout "$AUTH_REG"
  dk rmi "$image" >/dev/null 2>&1
  step_fails "docker pull after logout is refused" dk pull "$image"
}

# ---- the pull-through cache: a second marina mirrors this one ---------------------------------
# The mirror serves this marina's repositories under the prefix upstream.local ([[proxy]]).
# skopeo pulls through the prefix, podman through a registries.conf mirror entry, containerd
# through a hosts.toml mirror (it adds ?ns=upstream.local). The bytes must be the upstream's,
# and what the mirror has cached is served without a GET to the upstream.

MIRROR_PID=
MIRROR_LOG=$WORK/mirror.log
start_mirror() {
  local i
  MPORT=$(free_port) && [[ "$MPORT" =~ ^[0-9]+$ ]] || return 1
  printf '[[proxy]]\nprefix = "upstream.local"\nremote = "%s"\ntag_ttl = "1h"\n' "$BASE" \
    >"$WORK/mirror.toml"
  env -u MARINA_CONFIG "$MARINA_BIN" --listen "127.0.0.1:$MPORT" --config "$WORK/mirror.toml" \
    --storage-driver filesystem --storage-path "$WORK/mirror-data" \
    --log-level info --log-format text >"$MIRROR_LOG" 2>&1 &
  MIRROR_PID=$!
  for i in $(seq 150); do
    [ "$(reg_curl -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MPORT/v2/" 2>/dev/null)" = 200 ] && return 0
    kill -0 "$MIRROR_PID" 2>/dev/null || break
    sleep 0.1
  done
  tail -n 5 "$MIRROR_LOG" | sed 's/^/#   /'
  return 1
}

# upstream_gets FROM: GETs of manifests and blobs the upstream (this marina) answered with 200
# since its log line FROM.
upstream_gets() {
  log_count 'method=GET route="/v2/<name>/(blobs/<digest>|manifests/<reference>)" user="[^"]*" status=200' "$1"
}
# mirror_gets: the same, answered by the mirror since it started.
mirror_gets() {
  grep -cE 'method=GET route="/v2/<name>/(blobs/<digest>|manifests/<reference>)" user="[^"]*" status=200' \
    "$MIRROR_LOG" || true
}
# mirror_resolves: manifest GETs and HEADs the mirror answered with 200 since it started.
mirror_resolves() {
  grep -cE 'method=(GET|HEAD) route="/v2/<name>/manifests/<reference>" user="[^"]*" status=200' \
    "$MIRROR_LOG" || true
}

# pm_proxy CONF ARGS...: podman with its own store and the registries.conf CONF.
pm_proxy() {
  local conf=$1
  shift
  CONTAINERS_REGISTRIES_CONF=$conf REGISTRIES_CONFIG_PATH=$conf \
    masked podman-proxy podman --root "$WORK/podman-proxy/root" \
    --runroot "$WORK/podman-proxy/run" --storage-driver vfs --tmpdir "$WORK/podman/tmp" \
    --events-backend none --cgroup-manager cgroupfs "$@"
}

section_proxy() {
  local M from served="" conf d children
  start_mirror || { fail "the mirror marina did not start"; return 0; }
  ok "a mirror marina answers on 127.0.0.1:$MPORT with [[proxy]] upstream.local -> $BASE"
  M=127.0.0.1:$MPORT
  children="$D_AMD64 $D_ARM64 $(manifest_blobs "$(layout_blob "$L" "$D_AMD64")")
            $(manifest_blobs "$(layout_blob "$L" "$D_ARM64")")"

  from=$(log_lines)
  if step "skopeo copy --all docker://<mirror>/upstream.local/e2e/skopeo:index -> oci: (cold)" \
      sk copy --all --preserve-digests --src-tls-verify=false \
      "docker://$M/upstream.local/e2e/skopeo:index" "oci:$WORK/proxy-cold:index"; then
    check_eq "proxy: skopeo pulled the upstream's index digest" "$D_INDEX" \
      "$(layout_digest "$WORK/proxy-cold" index)"
    for d in $children; do
      cmp -s "$(layout_blob "$WORK/proxy-cold" "$d")" "$(layout_blob "$L" "$d")" || served="$served $d"
    done
    check_eq "proxy: every manifest and blob skopeo pulled equals the upstream's" "" "$served"
    if [ "$(upstream_gets "$from")" -gt 0 ]; then ok "proxy: the cold pull fetched from the upstream"
    else fail "proxy: the cold pull sent the upstream no GET"; fi
    from=$(log_lines)
    step "skopeo copy --all the same image again (warm)" \
      sk copy --all --preserve-digests --src-tls-verify=false \
      "docker://$M/upstream.local/e2e/skopeo:index" "oci:$WORK/proxy-warm:index" &&
      check_eq "proxy: a warm pull sends the upstream no GET" 0 "$(upstream_gets "$from")"
  fi

  conf=$WORK/registries-mirror.conf
  cat >"$conf" <<EOF
unqualified-search-registries = []
[[registry]]
prefix = "upstream.example"
location = "$REG"
insecure = true
[[registry.mirror]]
location = "$M/upstream.local"
insecure = true
EOF
  served=$(mirror_gets)
  if step "podman pull upstream.example/e2e/skopeo:multi (a registries.conf mirror)" \
      pm_proxy "$conf" pull upstream.example/e2e/skopeo:multi; then
    check_eq "proxy: podman's image has the upstream's manifest digest" "$D_MULTI" \
      "$(pm_proxy "$conf" image inspect --format '{{.Digest}}' upstream.example/e2e/skopeo:multi)"
    if [ "$(mirror_gets)" -gt "$served" ]; then ok "proxy: podman pulled through the mirror"
    else fail "proxy: podman did not use the mirror (it fell back to the upstream)"; fi
  fi

  if [ -n "$CONTAINERD_PID" ]; then
    mkdir -p "$WORK/hosts/upstream.local"
    cat >"$WORK/hosts/upstream.local/hosts.toml" <<EOF
server = "http://$REG"
[host."http://$M"]
  capabilities = ["pull", "resolve"]
EOF
    from=$(log_lines)
    # containerd holds these blobs already (the ctr section pulled the image): it resolves the
    # tag through the mirror, and fetches what it lacks there.
    served=$(mirror_resolves)
    if step "ctr images pull --hosts-dir (a mirror: ?ns=upstream.local) upstream.local/e2e/skopeo:index" \
        c images pull --hosts-dir "$WORK/hosts" --all-platforms upstream.local/e2e/skopeo:index; then
      check_eq "proxy: containerd pulled the upstream's index digest" "$D_INDEX" \
        "$(ctr_image_digest upstream.local/e2e/skopeo:index)"
      # shellcheck disable=SC2086
      ctr_check_content "proxy: containerd's manifests and blobs hash to their digests" $children
      if [ "$(mirror_resolves)" -gt "$served" ]; then ok "proxy: containerd resolved through the mirror"
      else fail "proxy: containerd did not use the mirror"; fi
      check_eq "proxy: the mirror answered containerd from its cache (no upstream GET)" 0 \
        "$(upstream_gets "$from")"
    fi
  else
    note "containerd is not running: its mirror pull is skipped here (the ctr section failed)"
  fi
  if grep -qE ' (ERROR|panicked)' "$MIRROR_LOG"; then
    fail "the mirror logged errors:"
    grep -E ' (ERROR|panicked)' "$MIRROR_LOG" | head -n 5 | sed 's/^/#   /'
  fi
  stop_pid "$MIRROR_PID" mirror
  MIRROR_PID=
}

# ---- run -------------------------------------------------------------------------------------

[ "$have_skopeo" = 1 ] && run_section skopeo
[ "$have_buildah" = 1 ] && run_section buildah
[ "$have_podman" = 1 ] && run_section podman
wanted() { [ -z "${E2E_ONLY:-}" ] || [[ " $E2E_ONLY " == *" $1 "* ]]; }
# containerd runs for ctr, and for ctr --user in the auth section, which comes last: it signs in
# to a marina of its own.
if [ "$have_ctr" = 1 ] && { wanted ctr || wanted auth; }; then
  if start_containerd; then
    run_section ctr
    wanted proxy && run_section proxy
  else
    fail "containerd did not start (log above)"
  fi
fi
if ! { [ "$have_ctr" = 1 ] && { wanted ctr || wanted auth; }; }; then run_section proxy; fi
[ "$have_oras" = 1 ] && run_section oras
[ "$have_dxf" = 1 ] && run_section dxf
run_section auth
stop_pid "$CONTAINERD_PID" containerd
CONTAINERD_PID=

if grep -qE ' (ERROR|panicked)' "$MARINA_LOG"; then
  fail "marina logged errors:"
  grep -E ' (ERROR|panicked)' "$MARINA_LOG" | head -n 10 | sed 's/^/#   /'
else
  ok "marina logged no errors"
fi
if kill -0 "$MARINA_PID" 2>/dev/null; then ok "marina still running at the end"; else fail "marina exited during the run"; fi
MAIN_DONE=1
