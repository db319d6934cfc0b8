#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what the tests need
# (idempotently), then runs formatting, lints, unit and integration tests (on the filesystem
# and again on S3), the real-client end-to-end suite, the container image (built offline from the
# Containerfile, then run as the README says), the deploy/ files' checks, the conformance
# runner's plumbing test, and a bounded run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."
# cargo install (Garage) puts binaries here; the tests find garage on PATH.
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n=== %s\n' "$*"; }

step "setup"
bash scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo build --release (the binary alone, as cargo run --release builds it)"
cargo build --release --locked --bin marina

step "cargo clippy"
cargo clippy --release --workspace --all-targets --locked -- -D warnings

step "cargo test (unit, integration on the filesystem, S3 on Garage, oci-client)"
cargo test --release --workspace --locked

step "integration suite again, every test on S3 (Garage)"
MARINA_TEST_STORAGE=s3 cargo test --release --locked --test it

export MARINA_BIN="$PWD/target/release/marina"

step "real clients end to end"
bash tests/clients/run.sh

step "container image (offline build of the Containerfile)"
bash tests/container/run.sh

step "deploy files (Kubernetes YAML, Grafana dashboard, systemd unit)"
bash tests/container/deploy_check.sh

step "conformance runner plumbing"
bash tests/conformance/test_script.sh

step "fuzz targets: build, and a bounded run of each"
bash scripts/fuzz.sh 10
