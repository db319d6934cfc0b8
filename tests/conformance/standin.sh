#!/usr/bin/env bash
# Stand-in for the upstream OCI conformance binary, used by tests/conformance/test_script.sh to test
# scripts/conformance.sh without Go.
#
# Like the real suites it reads only its environment. It checks every OCI_* variable that
# conformance.sh must set (for the legacy v1.1.x suite and for the new runner on main), talks to the
# registry to prove it is the marina that conformance.sh started (GET /v2/, a small push and pull, an
# anonymous mount to compare with OCI_AUTOMATIC_CROSSMOUNT), then writes junit.xml and report.html
# into OCI_REPORT_DIR and exits 0 if every check passed, 1 otherwise.
# With an https OCI_ROOT_URL (--tls) it trusts only SSL_CERT_FILE, as Go's crypto/x509 would; with
# OCI_USERNAME set (--auth) it checks that anonymous clients are asked to sign in, gets a token from
# the challenge's realm with OCI_USERNAME / OCI_PASSWORD, and sends it with every request.
#
# Test switches (environment):
#   STANDIN_FAIL=1       add a failing test case and exit 1 (checks exit-status propagation)
#   STANDIN_NO_REPORT=1  write no report and exit 0 (what the new runner does on a config error)
#   STANDIN_SLEEP=N      wait N seconds before writing the reports (to test signal handling)
set -uo pipefail

checks=()    # "name|ok" or "name|fail|message"
pass() { checks+=("$1|ok"); }
fail() { checks+=("$1|fail|$2"); }
check() { # check NAME MESSAGE CMD...
  local name=$1 msg=$2
  shift 2
  if "$@"; then pass "$name"; else fail "$name" "$msg"; fi
}

is_true() { case "${1:-}" in 1|t|T|true|TRUE|True) return 0 ;; *) return 1 ;; esac; }
is_bool() { case "${1:-}" in 1|t|T|true|TRUE|True|0|f|F|false|FALSE|False) return 0 ;; *) return 1 ;; esac; }
name_re='^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$'
valid_name() { [[ "${1:-}" =~ $name_re ]]; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/standin.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------------------ environment
root=${OCI_ROOT_URL:-}
check env.OCI_ROOT_URL "OCI_ROOT_URL='$root' is not http(s)://127.0.0.1:PORT" \
  eval '[[ "$root" =~ ^https?://127\.0\.0\.1:[0-9]+$ ]]'
port=${root##*:}
check env.OCI_REGISTRY "OCI_REGISTRY='${OCI_REGISTRY:-}' does not match OCI_ROOT_URL" \
  test "${OCI_REGISTRY:-}" = "127.0.0.1:$port"
curl_tls=()
if [[ "$root" == https://* ]]; then
  check env.OCI_TLS "OCI_TLS='${OCI_TLS:-}' is not 'enabled' for an https OCI_ROOT_URL" test "${OCI_TLS:-}" = enabled
  check env.SSL_CERT_FILE "SSL_CERT_FILE='${SSL_CERT_FILE:-}' is not a CA certificate file" \
    eval '[ -f "${SSL_CERT_FILE:-}" ] && grep -q "BEGIN CERTIFICATE" "$SSL_CERT_FILE"'
  # HTTP/1.1, as the legacy suite's Go client speaks it to marina (curl would pick HTTP/2 by ALPN).
  curl_tls=(--http1.1 --cacert "${SSL_CERT_FILE:-/nonexistent}")
else
  check env.OCI_TLS "OCI_TLS='${OCI_TLS:-}' is not 'disabled'" test "${OCI_TLS:-}" = disabled
fi

check env.OCI_NAMESPACE "OCI_NAMESPACE='${OCI_NAMESPACE:-}' is not a valid repository name" valid_name "${OCI_NAMESPACE:-}"
check env.OCI_CROSSMOUNT_NAMESPACE "OCI_CROSSMOUNT_NAMESPACE='${OCI_CROSSMOUNT_NAMESPACE:-}' is not a valid repository name, or equals OCI_NAMESPACE" \
  eval 'valid_name "${OCI_CROSSMOUNT_NAMESPACE:-}" && [ "${OCI_CROSSMOUNT_NAMESPACE}" != "${OCI_NAMESPACE:-}" ]'
check env.OCI_REPO1 "OCI_REPO1='${OCI_REPO1:-}' differs from OCI_NAMESPACE" \
  eval 'valid_name "${OCI_REPO1:-}" && [ "$OCI_REPO1" = "${OCI_NAMESPACE:-}" ]'
check env.OCI_REPO2 "OCI_REPO2='${OCI_REPO2:-}' differs from OCI_CROSSMOUNT_NAMESPACE" \
  eval 'valid_name "${OCI_REPO2:-}" && [ "$OCI_REPO2" = "${OCI_CROSSMOUNT_NAMESPACE:-}" ]'

for v in OCI_TEST_PULL OCI_TEST_PUSH OCI_TEST_CONTENT_DISCOVERY OCI_TEST_CONTENT_MANAGEMENT; do
  check "env.$v" "$v='${!v:-}' does not enable the workflow" is_true "${!v:-}"
done
check env.OCI_AUTOMATIC_CROSSMOUNT "OCI_AUTOMATIC_CROSSMOUNT='${OCI_AUTOMATIC_CROSSMOUNT-<unset>}' is not 0 or 1" \
  eval '[ "${OCI_AUTOMATIC_CROSSMOUNT:-}" = 0 ] || [ "${OCI_AUTOMATIC_CROSSMOUNT:-}" = 1 ]'
check env.OCI_HIDE_SKIPPED_WORKFLOWS "OCI_HIDE_SKIPPED_WORKFLOWS='${OCI_HIDE_SKIPPED_WORKFLOWS:-}' is not 0" \
  test "${OCI_HIDE_SKIPPED_WORKFLOWS:-}" = 0
check env.OCI_DEBUG "OCI_DEBUG='${OCI_DEBUG-<unset>}' is not a boolean" is_bool "${OCI_DEBUG:-}"
check env.OCI_DELETE_MANIFEST_BEFORE_BLOBS "OCI_DELETE_MANIFEST_BEFORE_BLOBS='${OCI_DELETE_MANIFEST_BEFORE_BLOBS-<unset>}' is not a boolean" \
  is_bool "${OCI_DELETE_MANIFEST_BEFORE_BLOBS:-}"
check env.OCI_VERSION "OCI_VERSION='${OCI_VERSION:-}' is not a version the new runner accepts" \
  eval 'case "${OCI_VERSION:-}" in 1.0|1.1|stable|dev|1.1+dev) true ;; *) false ;; esac'

report_dir=${OCI_REPORT_DIR:-}
check env.OCI_REPORT_DIR "OCI_REPORT_DIR='$report_dir' is not an absolute, existing directory" \
  eval '[[ "$report_dir" == /* ]] && [ -d "$report_dir" ]'
check env.OCI_RESULTS_DIR "OCI_RESULTS_DIR='${OCI_RESULTS_DIR:-}' differs from OCI_REPORT_DIR" \
  test "${OCI_RESULTS_DIR:-}" = "$report_dir"
check env.working_directory "working directory '$(pwd)' is not OCI_REPORT_DIR" \
  test "$(pwd -P)" = "$(cd "$report_dir" 2>/dev/null && pwd -P)"
for v in OCI_TAG_NAME OCI_MANIFEST_DIGEST OCI_BLOB_DIGEST OCI_TAG_LIST; do
  check "env.no_$v" "$v is set; the suite would skip pushing content" test -z "${!v:-}"
done

# ------------------------------------------------------------------------------ registry
R=$root
ns=${OCI_NAMESPACE:-conformance/none}
xns=${OCI_CROSSMOUNT_NAMESPACE:-conformance/none2}

auth_header=()  # set once signed in
req() { # req METHOD URL [curl args...] -> sets $status, headers in $tmp/h, body in $tmp/b
  local method=$1 url=$2
  shift 2
  status=$(curl --noproxy '*' -s ${curl_tls[@]+"${curl_tls[@]}"} ${auth_header[@]+"${auth_header[@]}"} \
    -X "$method" -D "$tmp/h" -o "$tmp/b" -w '%{http_code}' --max-time 10 "$@" "$url" 2>/dev/null) || status=000
}
header() { grep -i "^$1:" "$tmp/h" | head -n1 | cut -d: -f2- | tr -d '\r' | sed 's/^ *//'; }
digest_of() { printf 'sha256:%s' "$(sha256sum "$1" | cut -d' ' -f1)"; }

if [ -n "${OCI_USERNAME:-}" ]; then
  check env.OCI_PASSWORD "OCI_USERNAME is set but OCI_PASSWORD is empty" test -n "${OCI_PASSWORD:-}"
  req GET "$R/v2/"
  challenge=$(header WWW-Authenticate)
  check auth.challenge "anonymous GET /v2/ answered $status with challenge '$challenge', not 401 Bearer with a realm under OCI_ROOT_URL" \
    eval '[ "$status" = 401 ] && [[ "$challenge" == Bearer\ *realm=\"$R/* ]]'
  realm=$(printf '%s' "$challenge" | sed -n 's/.*realm="\([^"]*\)".*/\1/p')
  service=$(printf '%s' "$challenge" | sed -n 's/.*service="\([^"]*\)".*/\1/p')
  req GET "${realm:-$R/auth/token}" -G --data-urlencode "service=$service" \
    --data-urlencode "scope=repository:${OCI_NAMESPACE:-x}:pull,push" \
    --data-urlencode "scope=repository:${OCI_CROSSMOUNT_NAMESPACE:-x}:pull,push" \
    -u "${OCI_USERNAME}:${OCI_PASSWORD:-}"
  token=$(tr -d '\n' <"$tmp/b" | sed -n 's/.*"token" *: *"\([^"]*\)".*/\1/p')
  check auth.token "the token service at '$realm' answered $status and no token for OCI_USERNAME / OCI_PASSWORD" \
    eval '[ "$status" = 200 ] && [ -n "$token" ]'
  auth_header=(-H "Authorization: Bearer $token")
fi

req GET "$R/v2/"
check registry.ping "GET /v2/ answered $status, not 200" test "$status" = 200
check registry.api_version_header "GET /v2/ has no 'Docker-Distribution-API-Version: registry/2.0'" \
  test "$(header Docker-Distribution-API-Version)" = registry/2.0

# A blob, a config and a manifest: push, then pull back byte for byte.
printf 'standin layer %s %s\n' "$$" "$(date +%s%N)" >"$tmp/layer"
printf '{}' >"$tmp/config"
layer_digest=$(digest_of "$tmp/layer")
config_digest=$(digest_of "$tmp/config")
for blob in layer config; do
  d=$(digest_of "$tmp/$blob")
  req POST "$R/v2/$ns/blobs/uploads/?digest=$d" -H 'Content-Type: application/octet-stream' --data-binary "@$tmp/$blob"
  check "push.blob_$blob" "POST ?digest= for the $blob answered $status, not 201" test "$status" = 201
done
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}' \
  "$config_digest" "$layer_digest" "$(wc -c <"$tmp/layer")" >"$tmp/manifest"
manifest_digest=$(digest_of "$tmp/manifest")
req PUT "$R/v2/$ns/manifests/standin" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "@$tmp/manifest"
check push.manifest "manifest PUT answered $status, not 201" test "$status" = 201
check push.manifest_digest "manifest PUT's Docker-Content-Digest is not $manifest_digest" \
  test "$(header Docker-Content-Digest)" = "$manifest_digest"

req GET "$R/v2/$ns/manifests/standin" -H 'Accept: application/vnd.oci.image.manifest.v1+json'
check pull.manifest "manifest GET answered $status or other bytes" eval '[ "$status" = 200 ] && cmp -s "$tmp/b" "$tmp/manifest"'
req GET "$R/v2/$ns/blobs/$layer_digest"
check pull.blob "blob GET answered $status or other bytes" eval '[ "$status" = 200 ] && cmp -s "$tmp/b" "$tmp/layer"'

# Anonymous mount (no from=): 201 exactly when marina runs with mount-without-from on.
req POST "$R/v2/$xns/blobs/uploads/?mount=$layer_digest"
case "$status" in
  201) mounted=1 ;;
  202) mounted=0 ;;
  *) mounted="status $status" ;;
esac
check registry.automatic_crossmount "anonymous mount shows automatic crossmount=$mounted but OCI_AUTOMATIC_CROSSMOUNT=${OCI_AUTOMATIC_CROSSMOUNT:-<unset>}" \
  test "$mounted" = "${OCI_AUTOMATIC_CROSSMOUNT:-}"
want_anon=false; [ "$mounted" = 1 ] && want_anon=true
check env.OCI_API_BLOBS_MOUNT_ANONYMOUS "OCI_API_BLOBS_MOUNT_ANONYMOUS='${OCI_API_BLOBS_MOUNT_ANONYMOUS:-}' does not match the registry ($want_anon)" \
  test "${OCI_API_BLOBS_MOUNT_ANONYMOUS:-}" = "$want_anon"

if [ "${STANDIN_FAIL:-0}" = 1 ]; then
  fail standin.forced_failure "STANDIN_FAIL=1 was set"
fi

if [[ "${STANDIN_SLEEP:-0}" =~ ^[1-9][0-9]*$ ]]; then
  echo "standin: sleeping ${STANDIN_SLEEP}s" >&2
  for _ in $(seq 1 $(( STANDIN_SLEEP * 10 ))); do sleep 0.1; done
fi

# ------------------------------------------------------------------------------ reports
if [ "${STANDIN_NO_REPORT:-0}" = 1 ]; then
  echo "standin: STANDIN_NO_REPORT=1, writing no report" >&2
  exit 0
fi

xml_escape() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' -e 's/"/\&quot;/g'; }
total=${#checks[@]}
failures=0
cases=
rows=
for c in "${checks[@]}"; do
  IFS='|' read -r name result msg <<<"$c"
  if [ "$result" = ok ]; then
    cases+="    <testcase name=\"$name\" classname=\"standin\" time=\"0\"></testcase>"$'\n'
    rows+="<tr><td>$name</td><td>ok</td></tr>"$'\n'
    echo "standin: ok   $name"
  else
    failures=$(( failures + 1 ))
    emsg=$(printf '%s' "$msg" | xml_escape)
    cases+="    <testcase name=\"$name\" classname=\"standin\" time=\"0\"><failure message=\"$emsg\" type=\"failed\">$emsg</failure></testcase>"$'\n'
    rows+="<tr><td>$name</td><td>FAIL: $emsg</td></tr>"$'\n'
    echo "standin: FAIL $name: $msg"
  fi
done

out_dir=${report_dir:-.}
[ -d "$out_dir" ] || out_dir=.
cat >"$out_dir/junit.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="$total" disabled="0" errors="0" failures="$failures" time="0">
  <testsuite name="standin" package="standin" tests="$total" disabled="0" skipped="0" errors="0" failures="$failures" time="0">
$cases  </testsuite>
</testsuites>
EOF
cat >"$out_dir/report.html" <<EOF
<!DOCTYPE html>
<html><head><title>OCI conformance stand-in</title></head>
<body><h1>OCI conformance stand-in</h1>
<p>$total checks, $failures failed.</p>
<table>
$rows</table></body></html>
EOF

[ "$failures" = 0 ]
