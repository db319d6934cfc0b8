#!/usr/bin/env bash
# Tests the plumbing of scripts/conformance.sh with tests/conformance/standin.sh in place of the
# upstream conformance binary. Needs a built marina:
#   MARINA_BIN=target/release/marina tests/conformance/test_script.sh
# (default: target/release/marina of this checkout; this test never builds it).
# Prints "ok - ..." / "not ok - ..." lines and ends with "N passed, M failed"; exits 1 on any failure.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$here/../.." && pwd)
script=$repo_root/scripts/conformance.sh
standin=$here/standin.sh

marina=${MARINA_BIN:-$repo_root/target/release/marina}
case "$marina" in /*) ;; *) marina=$(pwd)/$marina ;; esac
if [ ! -x "$marina" ]; then
  echo "test_script.sh: no marina binary at '$marina'; build it or set MARINA_BIN" >&2
  exit 2
fi
export MARINA_BIN=$marina
unset CONFORMANCE_BIN STANDIN_FAIL STANDIN_NO_REPORT

passed=0
failed=0
ok() { passed=$(( passed + 1 )); echo "ok - $1"; }
not_ok() { failed=$(( failed + 1 )); echo "not ok - $1"; [ -z "${2:-}" ] || printf '#   %s\n' "$2"; }
expect() { # expect DESCRIPTION CMD...
  local desc=$1
  shift
  if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/conformance-test.XXXXXX")
fifo_holder=
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
listeners_5000() { # who listens on port 5000, as far as we can tell
  if command -v ss >/dev/null 2>&1; then
    ss -Hltn 'sport = :5000' 2>/dev/null | awk '{print $4}' | sort | tr '\n' ' '
  elif port_open 5000; then echo open; else echo closed; fi
}

# run NAME [ENV=VAL...] -- ARGS... : runs conformance.sh with stdin from /dev/null and a timeout;
# sets $rc; output in $tmp/NAME.out (stdout) and $tmp/NAME.err (stderr).
run() {
  local name=$1
  shift
  local envs=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
  [ "${1:-}" = -- ] && shift
  env ${envs[@]+"${envs[@]}"} timeout 180 "$script" "$@" </dev/null >"$tmp/$name.out" 2>"$tmp/$name.err"
  rc=$?
}
show() { sed 's/^/#   /' "$tmp/$1.out" "$tmp/$1.err" | tail -n 25; }

# marina's pid and port, as announced by conformance.sh
started() { sed -n 's/.*marina pid \([0-9]*\) listening on https\{0,1\}:\/\/127\.0\.0\.1:\([0-9]*\).*/\1 \2/p' "$tmp/$1.err" | tail -n1; }
marina_gone() { # NAME: the marina that run NAME started is no longer running and its port is closed
  local pid port
  read -r pid port <<<"$(started "$1")"
  [ -n "$pid" ] && [ -n "$port" ] || return 1
  ! kill -0 "$pid" 2>/dev/null && ! port_open "$port" && [ "$port" != 5000 ]
}
summary_line() { grep -E '^conformance summary: (PASS|FAIL) tests=[0-9]+ passed=[0-9]+ failures=[0-9]+ errors=[0-9]+ skipped=[0-9]+ ' "$tmp/$1.out"; }

before_5000=$(listeners_5000)

# ---------------------------------------------------------------- 1. a passing run
out1=$tmp/results-pass
mkdir -p "$out1"
echo '<testsuites><testsuite tests="9" failures="9" errors="0"></testsuite></testsuites>' >"$out1/junit.xml"
run pass -- --bin "$standin" --out "$out1"
if [ "$rc" = 0 ]; then ok "passing run exits 0"; else not_ok "passing run exits 0 (got $rc)"; show pass; fi
expect "report.html written to the output dir" test -s "$out1/report.html"
expect "junit.xml written to the output dir" test -s "$out1/junit.xml"
expect "stale junit.xml from an earlier run was replaced" grep -q 'name="standin"' "$out1/junit.xml"
expect "marina.log kept in the output dir" test -s "$out1/marina.log"
if line=$(summary_line pass); then
  ok "summary line printed: $line"
  expect "summary counts the stand-in's checks with no failures" eval '[[ "$line" =~ ^conformance\ summary:\ PASS\ tests=[1-9][0-9]*\ passed=[1-9][0-9]*\ failures=0\ errors=0\ skipped=0 ]]'
else
  not_ok "summary line printed"; show pass
fi
expect "stand-in saw every check pass (no FAIL lines)" eval '! grep -q "^standin: FAIL" "$tmp/pass.out"'
expect "marina was stopped afterwards (process gone, port closed, not 5000)" marina_gone pass

# ---------------------------------------------------------------- 2. exit status propagation
out2=$tmp/results-fail
run fail STANDIN_FAIL=1 -- --bin "$standin" --out "$out2"
if [ "$rc" = 1 ]; then ok "failing suite's exit status 1 is propagated"; else not_ok "failing suite's exit status 1 is propagated (got $rc)"; show fail; fi
if line=$(summary_line fail); then
  expect "summary of a failing run reports FAIL with failures=1" eval '[[ "$line" =~ ^conformance\ summary:\ FAIL\ .*\ failures=1\ errors=0 ]]'
else
  not_ok "summary of a failing run printed"; show fail
fi
expect "marina was stopped after a failing run" marina_gone fail

# ---------------------------------------------------------------- 3. suite writes no report
run noreport STANDIN_NO_REPORT=1 -- --bin "$standin" --out "$tmp/results-noreport"
if [ "$rc" != 0 ]; then ok "a suite that exits 0 without junit.xml is not a pass (exit $rc)"; else not_ok "a suite that exits 0 without junit.xml is not a pass"; show noreport; fi
expect "missing reports are named in the error" grep -q 'did not write junit.xml report.html' "$tmp/noreport.err"

# ---------------------------------------------------------------- 4. options
run crossoff -- --bin "$standin" --out "$tmp/results-crossoff" --no-automatic-crossmount
if [ "$rc" = 0 ]; then ok "--no-automatic-crossmount: marina and OCI_AUTOMATIC_CROSSMOUNT=0 agree"; else not_ok "--no-automatic-crossmount run exits 0 (got $rc)"; show crossoff; fi

mkdir -p "$tmp/cwd"
(cd "$tmp/cwd" && CONFORMANCE_BIN=$standin timeout 180 "$script" --out rel-out </dev/null >"$tmp/envbin.out" 2>"$tmp/envbin.err")
rc=$?
if [ "$rc" = 0 ] && [ -f "$tmp/cwd/rel-out/junit.xml" ]; then
  ok "CONFORMANCE_BIN env and a relative --out work"
else
  not_ok "CONFORMANCE_BIN env and a relative --out work (exit $rc)"; show envbin
fi

run badopt -- --bin "$standin" --bogus
expect "unknown option exits 2" test "$rc" = 2
expect "unknown option is named on stderr" grep -q "unknown option '--bogus'" "$tmp/badopt.err"
run badstorage -- --bin "$standin" --storage tape
expect "--storage tape exits 2" test "$rc" = 2
run nobin -- --out "$tmp/x"
expect "missing --bin exits 2" test "$rc" = 2
run novalue -- --bin
expect "--bin without a value exits 2" test "$rc" = 2
run help -- --help
expect "--help exits 0 and prints usage" eval '[ "$rc" = 0 ] && grep -q "^Usage:" "$tmp/help.out"'
expect "--help documents --replicas" grep -q -- '--replicas N' "$tmp/help.out"
expect "--help documents --auth and --tls" eval 'grep -q -- "^  --auth " "$tmp/help.out" && grep -q -- "^  --tls " "$tmp/help.out"'

# --auth and --tls: the stand-in checks what the suite gets (OCI_USERNAME / OCI_PASSWORD that a
# token from the challenge's realm accepts; an https OCI_ROOT_URL, OCI_TLS=enabled and an
# SSL_CERT_FILE that verifies marina's certificate) by talking to marina with it.
run auth -- --bin "$standin" --out "$tmp/results-auth" --auth
if [ "$rc" = 0 ]; then ok "--auth run exits 0"; else not_ok "--auth run exits 0 (got $rc)"; show auth; fi
expect "--auth: the stand-in signed in with OCI_USERNAME / OCI_PASSWORD and pushed with the token" \
  eval 'grep -q "^standin: ok   auth.token$" "$tmp/auth.out" && grep -q "^standin: ok   push.manifest$" "$tmp/auth.out" && ! grep -q "^standin: FAIL" "$tmp/auth.out"'
expect "--auth: marina asked anonymous clients to sign in (401 with a Bearer realm)" grep -q "^standin: ok   auth.challenge$" "$tmp/auth.out"
expect "--auth: automatic crossmount turned off, and said so" \
  eval 'grep -q "automatic crossmount off" "$tmp/auth.err" && grep -q "^standin: ok   registry.automatic_crossmount$" "$tmp/auth.out"'
expect "marina was stopped after an --auth run" marina_gone auth

run tls -- --bin "$standin" --out "$tmp/results-tls" --tls
if [ "$rc" = 0 ]; then ok "--tls run exits 0"; else not_ok "--tls run exits 0 (got $rc)"; show tls; fi
expect "--tls: https OCI_ROOT_URL, OCI_TLS=enabled and an SSL_CERT_FILE the stand-in verified marina with" \
  eval 'grep -q "listening on https://127\.0\.0\.1:" "$tmp/tls.err" && grep -q "^standin: ok   env.SSL_CERT_FILE$" "$tmp/tls.out" && grep -q "^standin: ok   pull.blob$" "$tmp/tls.out" && ! grep -q "^standin: FAIL" "$tmp/tls.out"'
expect "marina was stopped after a --tls run" marina_gone tls

run authtls -- --bin "$standin" --out "$tmp/results-authtls" --auth --tls
if [ "$rc" = 0 ] && grep -q "^standin: ok   auth.token$" "$tmp/authtls.out"; then
  ok "--auth --tls run exits 0, signed in over https"
else
  not_ok "--auth --tls run exits 0, signed in over https (got $rc)"; show authtls
fi

# An nginx without its ssl module cannot serve --tls --replicas: refused before anything starts.
mkdir -p "$tmp/fake-nginx"
printf '#!/bin/sh\necho "nginx version: nginx/0.0 (fake)" >&2\necho "configure arguments: --with-http_v2_module" >&2\nexit 0\n' >"$tmp/fake-nginx/nginx"
chmod +x "$tmp/fake-nginx/nginx"
run tlsnossl NGINX_BIN=$tmp/fake-nginx/nginx -- --bin "$standin" --out "$tmp/results-tlsnossl" --storage s3 --replicas 2 --tls
expect "--tls --replicas with an nginx lacking ssl: exit 3 naming the ssl module, before anything starts" \
  eval '[ "$rc" = 3 ] && grep -q "ssl module" "$tmp/tlsnossl.err" && ! grep -q "marina pid" "$tmp/tlsnossl.err"'

# --replicas: only its checks before anything starts are tested here. A run behind the proxy needs
# real S3 storage (the replicas share state only through the bucket), which this test does not have.
run replicas1 -- --bin "$standin" --storage s3 --replicas 1
expect "--replicas 1 exits 2" eval '[ "$rc" = 2 ] && grep -q "at least 2\|from 2 to" "$tmp/replicas1.err"'
run replicasword -- --bin "$standin" --storage s3 --replicas two
expect "--replicas two exits 2" test "$rc" = 2
run replicasfs -- --bin "$standin" --replicas 2
expect "--replicas without --storage s3 exits 2, naming --storage s3" \
  eval '[ "$rc" = 2 ] && grep -q -- "--replicas needs --storage s3" "$tmp/replicasfs.err"'
run replicasnonginx NGINX_BIN=$tmp/no-such-nginx -- --bin "$standin" --out "$tmp/results-nonginx" --storage s3 --replicas 2
expect "--replicas with no nginx: setup failure (exit 3) naming nginx, before anything starts" \
  eval '[ "$rc" = 3 ] && grep -q "needs nginx" "$tmp/replicasnonginx.err" && ! grep -q "marina pid" "$tmp/replicasnonginx.err" && ! grep -q "^standin:" "$tmp/replicasnonginx.out"'

# ---------------------------------------------------------------- 5. marina that cannot start
# The s3 backend is not built into every marina; without S3 settings it must fail to start either
# way, and the script must say so rather than run the suite. Keep real S3 credentials out of it.
s3_unset=()
for v in $(compgen -e | grep -E '^(S3|AWS)_' || true); do s3_unset+=(-u "$v"); done
env ${s3_unset[@]+"${s3_unset[@]}"} timeout 180 "$script" --bin "$standin" --out "$tmp/results-s3" --storage s3 --start-timeout 10 \
  </dev/null >"$tmp/s3.out" 2>"$tmp/s3.err"
rc=$?
if [ "$rc" = 3 ] && grep -q 'marina failed to start' "$tmp/s3.err"; then
  ok "--storage s3 without S3 settings: 'marina failed to start', exit 3"
else
  not_ok "--storage s3 without S3 settings: 'marina failed to start', exit 3 (got $rc)"; show s3
fi
expect "the stand-in did not run when marina failed to start" eval '! grep -q "^standin:" "$tmp/s3.out"'

# ---------------------------------------------------------------- 6. stdin is never read
# stdin is a FIFO that this shell holds open for writing and never writes to: any read blocks
# until the timeout kills the script.
mkfifo "$tmp/stdin"
exec 7<>"$tmp/stdin"
timeout 60 "$script" --bin "$standin" --out "$tmp/results-stdin" <&7 >"$tmp/stdin.out" 2>"$tmp/stdin.err"
rc=$?
exec 7>&-
if [ "$rc" = 0 ]; then ok "completes with an open, silent stdin (never reads it)"; else not_ok "completes with an open, silent stdin (got $rc; 124 means it blocked)"; show stdin; fi

# ---------------------------------------------------------------- 7. interrupted run
# SIGTERM to the script alone (not its process group) while the suite runs: the script itself must
# stop the suite and marina at once and exit 143.
STANDIN_SLEEP=60 "$script" --bin "$standin" --out "$tmp/results-term" \
  </dev/null >"$tmp/term.out" 2>"$tmp/term.err" &
term_pid=$!
for _ in $(seq 1 150); do grep -q 'standin: sleeping' "$tmp/term.err" 2>/dev/null && break; sleep 0.1; done
t0=$(date +%s)
kill -TERM "$term_pid"
for _ in $(seq 1 200); do kill -0 "$term_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$term_pid" 2>/dev/null; then kill -KILL "$term_pid"; fi
wait "$term_pid"
rc=$?
t1=$(date +%s)
if [ "$rc" = 143 ] && [ $(( t1 - t0 )) -le 15 ]; then
  ok "SIGTERM during the suite: exits 143 within $(( t1 - t0 ))s"
else
  not_ok "SIGTERM during the suite: exits 143 promptly (got $rc after $(( t1 - t0 ))s)"; show term
fi
if marina_gone term; then ok "marina was stopped after SIGTERM"; else not_ok "marina was stopped after SIGTERM"; show term; fi
suite_pid=$(sed -n 's/.*stopping the suite (pid \([0-9]*\)).*/\1/p' "$tmp/term.err" | tail -n1)
if [ -n "$suite_pid" ] && ! kill -0 "$suite_pid" 2>/dev/null; then
  ok "the suite was stopped after SIGTERM"
else
  not_ok "the suite was stopped after SIGTERM (pid '${suite_pid}')"; show term
fi

# ---------------------------------------------------------------- 8. port 5000
after_5000=$(listeners_5000)
expect "port 5000 untouched (before: '${before_5000}', after: '${after_5000}')" test "$before_5000" = "$after_5000"
used_5000=0
for f in "$tmp"/*.err; do grep -qE 'listening on https?://127\.0\.0\.1:5000 ' "$f" && used_5000=1; done
expect "no run used port 5000" test "$used_5000" = 0

left=()
for f in "$tmp"/*.err; do
  d=$(sed -n 's/.*storage: filesystem in \(.*\)\/storage (fresh.*/\1/p' "$f" | tail -n1)
  if [ -n "$d" ] && [ -e "$d" ]; then left+=("$d"); fi
done
expect "every run removed its temporary storage${left[*]:+ (left: ${left[*]})}" test ${#left[@]} = 0

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
