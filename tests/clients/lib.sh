# Helpers for tests/clients/run.sh: result recording, registry access with curl,
# digest and byte comparisons. Sourced, not executed.
#
# Results are appended to "$RESULTS" (one "ok"/"FAIL" word per line) rather than kept in shell
# variables, so checks made inside the per-client subshells are counted too.

# ---- result recording ------------------------------------------------------------------------

ok()   { printf 'ok  - %s\n' "$*"; echo ok >>"$RESULTS"; }
fail() { printf 'FAIL - %s\n' "$*"; echo FAIL >>"$RESULTS"; }
note() { printf '# %s\n' "$*"; }

# tally: counts the checks recorded so far into PASSED and FAILED (before $RESULTS is removed).
tally() {
  PASSED=$(grep -c '^ok$' "$RESULTS" 2>/dev/null)
  FAILED=$(grep -c '^FAIL$' "$RESULTS" 2>/dev/null)
}

# summarize_and_exit: the wall time (since START_SECONDS) and `N passed, M failed` as the last
# `tally` counted them; exits 0 only if some check passed and none failed.
summarize_and_exit() {
  note "wall time: $((SECONDS - START_SECONDS)) s"
  printf '%s passed, %s failed\n' "${PASSED:-0}" "${FAILED:-0}"
  if [ "${FAILED:-0}" = 0 ] && [ "${PASSED:-0}" != 0 ]; then exit 0; fi
  exit 1
}

# Indents the last lines of a command's output under a FAIL line.
show_output() { tail -n "${2:-20}" <<<"$1" | sed 's/^/#   /'; }

# step DESC CMD...: runs CMD; ok if it exits 0, otherwise FAIL and its output. Returns CMD's status,
# so a caller can stop a sequence whose later steps depend on this one: `step ... || return 0`.
step() {
  local desc=$1 out rc
  shift
  if out=$("$@" 2>&1); then
    ok "$desc"
    return 0
  else
    rc=$?
    fail "$desc (exit $rc)"
    show_output "$out"
    return "$rc"
  fi
}

# step_fails DESC CMD...: ok if CMD exits non-zero (an operation that must be refused).
step_fails() {
  local desc=$1 out
  shift
  if out=$("$@" 2>&1); then
    fail "$desc (command unexpectedly succeeded)"
    show_output "$out"
    return 1
  fi
  ok "$desc"
}

# check_eq DESC EXPECTED ACTUAL
check_eq() {
  if [ "$2" = "$3" ]; then
    ok "$1"
  else
    fail "$1: expected '$2', got '$3'"
    return 1
  fi
}

# check_files_equal DESC EXPECTED_FILE ACTUAL_FILE: byte-for-byte comparison.
check_files_equal() {
  if cmp -s -- "$2" "$3"; then
    ok "$1"
  else
    fail "$1: $(file_digest "$2" 2>/dev/null || echo missing) ($2) != $(file_digest "$3" 2>/dev/null || echo missing) ($3)"
    return 1
  fi
}

# ---- digests ---------------------------------------------------------------------------------

file_digest() { [ -f "$1" ] || return 1; printf 'sha256:%s' "$(sha256sum -- "$1" | cut -d' ' -f1)"; }
hex_of() { printf '%s' "${1#sha256:}"; }

# ---- OCI image layouts -----------------------------------------------------------------------

# layout_digest LAYOUT REF: digest of the manifest tagged REF in the layout's index.json.
layout_digest() {
  jq -er --arg r "$2" \
    '[.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $r)][0].digest' \
    "$1/index.json"
}
layout_blob() { printf '%s/blobs/sha256/%s' "$1" "$(hex_of "$2")"; }

# manifest_blobs MANIFEST_FILE: config and layer digests, one a line.
manifest_blobs() { jq -r '.config.digest, .layers[].digest' "$1"; }
# index_children INDEX_FILE: child manifest digests, one a line.
index_children() { jq -r '.manifests[].digest' "$1"; }

# ---- registry access with curl ---------------------------------------------------------------

ACCEPT_MANIFESTS='application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json'

reg_curl() { curl -sS --noproxy '*' --max-time 60 "$@"; }

# reg_status METHOD PATH: HTTP status code of METHOD $BASE$PATH (manifests accepted in any type).
reg_status() {
  reg_curl -o /dev/null -w '%{http_code}' -X "$1" -H "Accept: $ACCEPT_MANIFESTS" "$BASE$2" || true
}

# reg_manifest_digest REPO REF: Docker-Content-Digest of HEAD /v2/REPO/manifests/REF.
reg_manifest_digest() {
  reg_curl -f -I -H "Accept: $ACCEPT_MANIFESTS" "$BASE/v2/$1/manifests/$2" |
    tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }'
}

# reg_get_manifest REPO REF OUT: raw manifest bytes into OUT.
reg_get_manifest() { reg_curl -f -H "Accept: $ACCEPT_MANIFESTS" -o "$3" "$BASE/v2/$1/manifests/$2"; }

# reg_get_blob REPO DIGEST OUT
reg_get_blob() { reg_curl -f -o "$3" "$BASE/v2/$1/blobs/$2"; }

# check_manifest_pushed DESC REPO REF EXPECTED_DIGEST [EXPECTED_BYTES_FILE]
# Checks that HEAD and GET of REPO:REF agree with EXPECTED_DIGEST (and, when given, that the
# served bytes are exactly those of EXPECTED_BYTES_FILE). Leaves the served bytes in $WORK/last-manifest.
check_manifest_pushed() {
  local desc=$1 repo=$2 ref=$3 want=$4 bytes=${5:-} head got
  head=$(reg_manifest_digest "$repo" "$ref" 2>/dev/null || true)
  if ! reg_get_manifest "$repo" "$ref" "$WORK/last-manifest" 2>/dev/null; then
    fail "$desc: GET /v2/$repo/manifests/$ref failed"
    return 1
  fi
  got=$(file_digest "$WORK/last-manifest")
  if [ "$head" != "$want" ] || [ "$got" != "$want" ]; then
    fail "$desc: expected $want, HEAD says '$head', GET body hashes to $got"
    return 1
  fi
  if [ -n "$bytes" ] && ! cmp -s "$bytes" "$WORK/last-manifest"; then
    fail "$desc: served manifest bytes differ from $bytes"
    return 1
  fi
  ok "$desc"
}

# check_blobs_in_registry DESC REPO MANIFEST_FILE [LAYOUT]
# Downloads the config and every layer of MANIFEST_FILE from REPO, checks each hashes to its
# digest and, when LAYOUT is given, is byte-identical to the layout's copy.
check_blobs_in_registry() {
  local desc=$1 repo=$2 manifest=$3 layout=${4:-} d n=0 bad=()
  for d in $(manifest_blobs "$manifest"); do
    n=$((n + 1))
    if ! reg_get_blob "$repo" "$d" "$WORK/blob" 2>/dev/null; then
      bad+=("$d: GET failed")
    elif [ "$(file_digest "$WORK/blob")" != "$d" ]; then
      bad+=("$d: body hashes to $(file_digest "$WORK/blob")")
    elif [ -n "$layout" ] && ! cmp -s "$WORK/blob" "$(layout_blob "$layout" "$d")"; then
      bad+=("$d: bytes differ from the layout")
    fi
  done
  if [ ${#bad[@]} -eq 0 ]; then
    ok "$desc ($n blobs)"
  else
    fail "$desc: ${bad[*]}"
    return 1
  fi
}

# log_count PATTERN [FROM_LINE]: number of marina log lines after FROM_LINE matching PATTERN (ERE).
log_lines() { wc -l <"$MARINA_LOG" | tr -d ' '; }
log_count() { tail -n +"$(( ${2:-0} + 1 ))" "$MARINA_LOG" | grep -cE "$1" || true; }
