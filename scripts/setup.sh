#!/usr/bin/env bash
# Installs everything the test suite and benchmarks need on a fresh Debian 12 machine.
# Idempotent: each step is skipped when what it installs is already there.
#   scripts/setup.sh            everything
#   scripts/setup.sh --no-garage   skip the S3 server (saves ~6 minutes of compiling)
set -euo pipefail
cd "$(dirname "$0")/.."

want_garage=1
for arg in "$@"; do
  case "$arg" in
    --no-garage) want_garage=0 ;;
    *) echo "setup.sh: unknown option '$arg' (accepted: --no-garage)" >&2; exit 2 ;;
  esac
done

log() { printf '[setup] %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages: real OCI clients (the Docker engine among them), the reference registry,
# Garage's C libraries, nginx for the proxy of scripts/conformance.sh --replicas, and
# prometheus for promtool, which checks the /metrics output. For tests/container: debootstrap
# (the offline stand-ins of the Containerfile's base images), runc (crun refuses hybrid
# cgroups), the CNI plugins and iptables (podman's -p port mapping, as root), binutils
# (readelf), systemd (systemd-analyze verify of deploy/systemd) and python3-yaml (the
# deploy/kubernetes files parse).
apt_packages=(skopeo buildah podman containerd umoci docker-registry jq curl openssl
              python3-venv libsodium-dev libzstd-dev pkg-config nginx-light apache2-utils docker.io
              prometheus debootstrap runc containernetworking-plugins iptables binutils systemd
              python3-yaml)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The reference registry is for benchmarks only: never leave it running as a service.
  as_root systemctl disable --now docker-registry >/dev/null 2>&1 || true
  # nginx likewise: conformance.sh runs its own, with its own configuration, only while it runs.
  as_root systemctl disable --now nginx >/dev/null 2>&1 || true
  # The tests start their own dockerd and use only promtool: no system daemons of either.
  as_root systemctl disable --now docker.socket docker prometheus >/dev/null 2>&1 || true
else
  log "apt: all packages present"
fi

# Python clients, in a venv beside the checkout (ignored by git).
venv=.venv
if ! "$venv/bin/python" -c 'import oras, dxf' 2>/dev/null; then
  log "pip: installing oras and python-dxf into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check oras python-dxf
else
  log "pip: oras and python-dxf present"
fi

# Garage, a real distributed S3 server, for the S3 tests. Lean build (~5.5 min on 2 cores).
if [ "$want_garage" = 1 ]; then
  if command -v garage >/dev/null || [ -x "$HOME/.cargo/bin/garage" ]; then
    log "garage: present"
  else
    log "garage: building (about 6 minutes)"
    CARGO_PROFILE_RELEASE_OPT_LEVEL=1 cargo install garage --locked --quiet \
      --no-default-features --features lmdb,system-libs
  fi
fi
# cargo-fuzz (libFuzzer) for the bounded fuzz run and scripts/fuzz.sh.
if command -v cargo-fuzz >/dev/null || [ -x "$HOME/.cargo/bin/cargo-fuzz" ]; then
  log "cargo-fuzz: present"
else
  log "cargo-fuzz: building (about a minute)"
  cargo install cargo-fuzz --locked --quiet
fi
log "done"
