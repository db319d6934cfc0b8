#!/usr/bin/env bash
# Runs the OCI distribution-spec conformance suite against a private, freshly started marina.
#
# The suite itself (Go, from opencontainers/distribution-spec conformance/) is not built here: build it
# yourself and pass the binary. Both flavours work, because every variable of both is set:
#   - the legacy ginkgo suite of the v1.1.x tags   (go test -c -o conformance.test)
#   - the new runner on main                        (go build -o conformance)
#
# What this script does:
#   1. starts marina on a free loopback port (never 5000) with empty storage in a temp dir,
#      and waits until GET /v2/ answers; with --replicas N (s3 only), starts N marinas on the same
#      bucket and prefix, each on a port of its own, and a round-robin nginx reverse proxy in front
#      of them on another free loopback port, which the suite then talks to; with --auth, marina
#      signs users in from a fresh htpasswd file with a random user, whose name and password the
#      suite gets; with --tls, marina (and the proxy) serve HTTPS with a certificate of a fresh test
#      CA, which the suite trusts through SSL_CERT_FILE;
#   2. runs the suite with its working directory set to the output directory;
#   3. leaves report.html and junit.xml in the output directory (marina's log goes there too, as
#      marina.log; with --replicas, marina-1.log ... marina-N.log and the proxy's proxy.log and
#      proxy-access.log) and prints a one-line summary parsed from junit.xml;
#   4. stops the proxy and marina (only the processes it started) and exits with the suite's exit
#      status.
#
# Exit status: the suite's own status (0 = all passed); 2 = bad usage; 3 = setup failure (marina
# missing or failed to start, the suite wrote no junit.xml, ...).
# It never reads stdin.
set -euo pipefail

prog=conformance.sh
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
  cat <<EOF
Usage: scripts/$prog [OPTIONS] [-- SUITE_ARGS...]

Runs the OCI distribution-spec conformance suite against a freshly started marina.

Options:
  --bin PATH                 Conformance suite binary (or env CONFORMANCE_BIN). Required.
                             Legacy v1.1.x: 'go test -c -o conformance.test' in conformance/;
                             main: 'go build -o conformance' in conformance/.
  --marina PATH              marina binary (or env MARINA_BIN). Default: target/release/marina
                             of this checkout, built with 'cargo build --release' if missing.
  --storage filesystem|s3    Storage backend (default filesystem, in a fresh temp dir). For s3,
                             STORAGE_DRIVER=s3 is set and your S3_* / AWS_* variables are passed on.
  --out DIR                  Output directory for report.html, junit.xml and marina.log
                             (default ./conformance-results). Created if missing; old reports in it
                             are removed first.
  --no-automatic-crossmount  Start marina with --mount-without-from false and tell the suite
                             (OCI_AUTOMATIC_CROSSMOUNT=0). The default is on (=1).
  --replicas N               Start N (at least 2) marinas on the same S3 bucket and prefix, and
                             point the suite at a round-robin nginx reverse proxy in front of them
                             (no request buffering, keepalive to the marinas). Needs --storage s3
                             and nginx (Debian: nginx-light; or env NGINX_BIN). Logs go to
                             marina-1.log ... marina-N.log, proxy.log and proxy-access.log (one
                             line per request, with the replica that answered it and its
                             X-Request-Id).
  --auth                     Turn access control on: write an htpasswd file with a random user and
                             password (htpasswd -B, from apache2-utils) into the temp dir, start
                             marina with --auth-htpasswd, and give the suite the user as
                             OCI_USERNAME / OCI_PASSWORD. With --storage s3, a fresh P-256 token
                             signing key (openssl) is passed in a config file as auth.token.key,
                             the same for every replica. Implies --no-automatic-crossmount: with
                             auth on, marina never mounts without 'from'.
  --tls                      Serve HTTPS: make a test CA and a certificate for 127.0.0.1 (openssl)
                             in the temp dir, start marina with --tls-cert / --tls-key, point the
                             suite at https://127.0.0.1:PORT and give it SSL_CERT_FILE=<the CA>.
                             With --replicas, nginx serves HTTPS with the same certificate and
                             talks HTTPS to the marinas, checking their certificate against the CA.
  --start-timeout SECONDS    How long to wait for marina's GET /v2/ (default 30).
  -h, --help                 Show this help.

Arguments after '--' are passed to the suite binary unchanged.

Environment read (optional): NGINX_BIN (nginx for --replicas; default: nginx on PATH, else
/usr/sbin/nginx; with --tls it needs its ssl module), OCI_VERSION (default 1.1; new runner only,
e.g. 'dev' also tests upload cancel, ?tag= and digest headers), OCI_DEBUG (default 0),
OCI_DELETE_MANIFEST_BEFORE_BLOBS (default 1). Other OCI_* variables you set (OCI_LOG,
OCI_FILTER_TEST, OCI_API_*, OCI_DATA_*, ...) are passed through; the read-only-data ones (OCI_TAG_NAME, OCI_MANIFEST_DIGEST, OCI_BLOB_DIGEST,
OCI_TAG_LIST, OCI_RO_DATA_*) are removed, since the registry starts empty. With --auth,
OCI_USERNAME and OCI_PASSWORD are replaced by the generated user's; with --tls, the suite's
SSL_CERT_FILE is replaced by the test CA (for the suite only, not for marina or nginx).

Exit status: the suite's (0 = pass); 2 = bad usage; 3 = setup failure.
EOF
}

die_usage() { printf '%s: %s\n' "$prog" "$*" >&2; printf "Try 'scripts/%s --help'.\n" "$prog" >&2; exit 2; }
log() { printf '[conformance] %s\n' "$*" >&2; }
fail_setup() { printf '[conformance] error: %s\n' "$*" >&2; exit 3; }

# ---------------------------------------------------------------------------------------- options
bin=${CONFORMANCE_BIN:-}
marina=${MARINA_BIN:-}
storage=filesystem
out=./conformance-results
crossmount=1
start_timeout=30
replicas=        # empty: one marina, no proxy
auth=0
tls=0
suite_args=()

need_value() { [ $# -ge 2 ] && [ -n "$2" ] || die_usage "option $1 needs a value"; }
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --bin) need_value "$@"; bin=$2; shift 2 ;;
    --bin=*) bin=${1#*=}; shift ;;
    --marina) need_value "$@"; marina=$2; shift 2 ;;
    --marina=*) marina=${1#*=}; shift ;;
    --storage) need_value "$@"; storage=$2; shift 2 ;;
    --storage=*) storage=${1#*=}; shift ;;
    --out) need_value "$@"; out=$2; shift 2 ;;
    --out=*) out=${1#*=}; shift ;;
    --no-automatic-crossmount) crossmount=0; shift ;;
    --auth) auth=1; shift ;;
    --tls) tls=1; shift ;;
    --replicas) need_value "$@"; replicas=$2; shift 2 ;;
    --replicas=*) replicas=${1#*=}; shift ;;
    --start-timeout) need_value "$@"; start_timeout=$2; shift 2 ;;
    --start-timeout=*) start_timeout=${1#*=}; shift ;;
    --) shift; suite_args=("$@"); break ;;
    *) die_usage "unknown option '$1'" ;;
  esac
done

case "$storage" in
  filesystem|s3) ;;
  *) die_usage "--storage must be 'filesystem' or 's3', not '$storage'" ;;
esac
[[ "$start_timeout" =~ ^[1-9][0-9]*$ ]] || die_usage "--start-timeout must be a positive whole number of seconds"
if [ -n "$replicas" ]; then
  [[ "$replicas" =~ ^[1-9][0-9]{0,2}$ ]] && [ "$replicas" -ge 2 ] \
    || die_usage "--replicas must be a whole number from 2 to 999, not '$replicas'"
  [ "$storage" = s3 ] || die_usage "--replicas needs --storage s3 (replicas share state only through the bucket)"
fi
[ -n "$out" ] || die_usage "--out must not be empty"
[ -n "$bin" ] || die_usage "no conformance binary: pass --bin PATH or set CONFORMANCE_BIN"

abspath() { # absolute form of a path whose parent exists; no symlink resolution needed
  case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$(pwd)" "$1" ;; esac
}

if [ ! -e "$bin" ] && [[ "$bin" != */* ]] && command -v "$bin" >/dev/null 2>&1; then
  bin=$(command -v "$bin")  # a bare name found on PATH
fi
bin=$(abspath "$bin")
[ -f "$bin" ] && [ -x "$bin" ] || die_usage "conformance binary '$bin' is not an executable file"

for tool in curl; do
  command -v "$tool" >/dev/null 2>&1 || fail_setup "'$tool' is required but not installed"
done
if [ "$auth" = 1 ]; then
  command -v htpasswd >/dev/null 2>&1 \
    || fail_setup "--auth needs htpasswd to write the users file: install it (Debian: apt-get install apache2-utils)"
fi
if [ "$tls" = 1 ] || { [ "$auth" = 1 ] && [ "$storage" = s3 ]; }; then
  what_needs_openssl="--tls"
  [ "$tls" = 1 ] || what_needs_openssl="--auth with --storage s3 (for the token signing key)"
  command -v openssl >/dev/null 2>&1 \
    || fail_setup "$what_needs_openssl needs openssl: install it (Debian: apt-get install openssl)"
fi
have_python=0
command -v python3 >/dev/null 2>&1 && have_python=1

nginx=
if [ -n "$replicas" ]; then
  nginx=${NGINX_BIN:-}
  if [ -z "$nginx" ]; then
    nginx=$(command -v nginx 2>/dev/null || true)
    # /usr/sbin is not on an ordinary user's PATH on Debian.
    [ -n "$nginx" ] || [ ! -x /usr/sbin/nginx ] || nginx=/usr/sbin/nginx
  fi
  [ -n "$nginx" ] && [ -f "$nginx" ] && [ -x "$nginx" ] \
    || fail_setup "--replicas needs nginx${nginx:+ (no executable at '$nginx')}: install it (Debian: apt-get install nginx-light) or set NGINX_BIN"
  if [ "$tls" = 1 ]; then
    # nginx -V prints its configure arguments on stderr.
    "$nginx" -V 2>&1 | grep -q -- '--with-http_ssl_module' \
      || fail_setup "--tls with --replicas needs nginx with its ssl module (--with-http_ssl_module in 'nginx -V'), which $nginx lacks: it serves the suite HTTPS and talks HTTPS to the marinas"
  fi
fi

# ---------------------------------------------------------------------------------------- marina binary
if [ -z "$marina" ]; then
  marina=$repo_root/target/release/marina
  if [ ! -x "$marina" ]; then
    command -v cargo >/dev/null 2>&1 || fail_setup "$marina is missing and cargo is not installed (or pass --marina / MARINA_BIN)"
    log "building marina: cargo build --release (in $repo_root)"
    (cd "$repo_root" && cargo build --release </dev/null) || fail_setup "cargo build --release failed"
  fi
fi
marina=$(abspath "$marina")
[ -f "$marina" ] && [ -x "$marina" ] || fail_setup "marina binary '$marina' is not an executable file"

# ---------------------------------------------------------------------------------------- output dir
mkdir -p "$out" || fail_setup "cannot create output directory '$out'"
out=$(cd "$out" && pwd)
# Remove reports of an earlier run, so a run that writes none cannot pass off old results as its own.
rm -f "$out/junit.xml" "$out/report.html" "$out/results.yaml" "$out/marina.log" "$out"/marina-[0-9]*.log \
  "$out/proxy.log" "$out/proxy-access.log"
n_marinas=${replicas:-1}
marina_logs=()  # marina_logs[i-1] is replica i's log
if [ -z "$replicas" ]; then
  marina_logs=("$out/marina.log")
else
  for i in $(seq 1 "$n_marinas"); do marina_logs+=("$out/marina-$i.log"); done
fi
proxy_log=$out/proxy.log
proxy_access_log=$out/proxy-access.log

# ---------------------------------------------------------------------------------------- cleanup
workdir=$(mktemp -d "${TMPDIR:-/tmp}/marina-conformance.XXXXXX")
marina_pids=()  # marina_pids[i-1] is replica i's pid, empty once it is stopped
marina_ports=()
proxy_pid=
suite_pid=

stop_process() { # $1 = pid, $2 = name for the log; SIGTERM, then SIGKILL after 10 s
  local pid=$1 name=$2
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do  # up to 10 s for a graceful stop
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) did not stop after SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
}

stop_proxy() {
  local pid=$proxy_pid
  proxy_pid=
  stop_process "$pid" nginx  # SIGTERM is nginx's fast shutdown; the master stops its workers
}

stop_marina() { # stops every replica
  local i pid
  for i in "${!marina_pids[@]}"; do
    pid=${marina_pids[$i]}
    marina_pids[$i]=
    if [ -z "$replicas" ]; then stop_process "$pid" marina; else stop_process "$pid" "marina replica $(( i + 1 ))"; fi
  done
}

cleanup() {
  trap '' INT TERM  # a second signal must not cut the cleanup short
  if [ -n "$suite_pid" ] && kill -0 "$suite_pid" 2>/dev/null; then
    log "stopping the suite (pid $suite_pid)"
    kill -TERM "$suite_pid" 2>/dev/null || true
    wait "$suite_pid" 2>/dev/null || true
  fi
  stop_proxy
  stop_marina
  rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------- free port
port_in_use() { # is something accepting connections on 127.0.0.1:$1 ?
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

taken_ports=()  # ports given to our own processes: a replica that has not bound its port yet must
                # not get a second one the same
pick_port() {
  local p i t clash
  for i in $(seq 1 50); do
    if [ "$have_python" = 1 ]; then
      p=$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()')
    else
      p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    fi
    # 5000 is the registry's customary port: never take it, even when it happens to be free.
    [ "$p" != 5000 ] || continue
    clash=0
    for t in ${taken_ports[@]+"${taken_ports[@]}"}; do [ "$t" != "$p" ] || clash=1; done
    [ "$clash" = 0 ] || continue
    port_in_use "$p" && continue
    taken_ports+=("$p")
    printf '%s\n' "$p"
    return 0
  done
  return 1
}

# ---------------------------------------------------------------------------------------- auth and tls
# Everything here lives in the work dir and is deleted with it.
rand_hex() { # $1 = bytes
  od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'
}
toml_string() { # a TOML basic string
  local v=$1
  v=${v//\\/\\\\}
  v=${v//\"/\\\"}
  printf '"%s"' "$v"
}

marina_config=      # a TOML file for settings that have no flag; empty: none
htpasswd_file=
auth_user=
auth_password=
if [ "$auth" = 1 ]; then
  # 0700: the work dir itself becomes 0711 for nginx's workers, which need nothing in here.
  mkdir -m 700 "$workdir/auth"
  auth_user=conformance-$(rand_hex 4)
  auth_password=$(rand_hex 16)
  htpasswd_file=$workdir/auth/htpasswd
  # -i: the password comes on htpasswd's stdin, not on its command line.
  printf '%s\n' "$auth_password" | htpasswd -B -i -c "$htpasswd_file" "$auth_user" \
    >"$workdir/auth/htpasswd.out" 2>&1 \
    || fail_setup "htpasswd could not write $htpasswd_file: $(tr '\n' ' ' <"$workdir/auth/htpasswd.out")"
  if [ "$storage" = s3 ]; then
    # On S3 marina needs the token signing key in its configuration (auth.token.key), and every
    # replica must sign and verify tokens with the same one.
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$workdir/auth/token.key" \
      >"$workdir/auth/openssl.out" 2>&1 \
      || fail_setup "openssl could not make a token signing key: $(tr '\n' ' ' <"$workdir/auth/openssl.out")"
    marina_config=$workdir/marina.toml
    printf '# Written by scripts/%s for one conformance run; deleted afterwards.\n[auth.token]\nkey = %s\n' \
      "$prog" "$(toml_string "$workdir/auth/token.key")" >"$marina_config"
  fi
  log "auth: on, one user '$auth_user' with a random password in $htpasswd_file${marina_config:+; token signing key in $workdir/auth/token.key, passed as auth.token.key in $marina_config}"
fi

scheme=http
curl_tls=()   # curl's arguments to trust our test CA
tls_ca=
tls_cert=
tls_key=
if [ "$tls" = 1 ]; then
  scheme=https
  tls_dir=$workdir/tls
  mkdir -m 700 "$tls_dir"  # nginx reads its certificates as the master process, before it drops privileges
  tls_ca=$tls_dir/ca.pem
  tls_cert=$tls_dir/cert.pem
  tls_key=$tls_dir/key.pem
  # A configuration of our own, so that nothing of the system's openssl.cnf gets in.
  # The leaf names localhost too: nginx checks an upstream's certificate against DNS names only.
  cat >"$tls_dir/openssl.cnf" <<'OPENSSL'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = marina conformance test CA
[ca_ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
OPENSSL
  {
    openssl req -x509 -config "$tls_dir/openssl.cnf" -extensions ca_ext \
      -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tls_dir/ca.key" \
      -subj "/CN=marina conformance test CA $(rand_hex 4)" -days 2 -out "$tls_ca" \
    && openssl req -new -config "$tls_dir/openssl.cnf" \
      -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tls_key" \
      -subj "/CN=127.0.0.1" -out "$tls_dir/cert.csr" \
    && openssl x509 -req -in "$tls_dir/cert.csr" -CA "$tls_ca" -CAkey "$tls_dir/ca.key" \
      -set_serial "0x$(rand_hex 16)" -days 2 -extfile "$tls_dir/openssl.cnf" -extensions leaf_ext \
      -out "$tls_cert"
  } >"$tls_dir/openssl.out" 2>&1 \
    || fail_setup "openssl could not make the test certificates: $(tail -n 5 "$tls_dir/openssl.out" | tr '\n' ' ')"
  curl_tls=(--cacert "$tls_ca")
  log "tls: on, certificate for 127.0.0.1 in $tls_cert, signed by the test CA $tls_ca"
fi
# What GET /v2/ answers once marina is ready: with auth on, it asks anonymous clients to sign in.
ready_want=200
[ "$auth" = 0 ] || ready_want=401

# ---------------------------------------------------------------------------------------- start marina
if [ "$auth" = 1 ] && [ "$crossmount" = 1 ]; then
  log "auth: automatic crossmount off (as with --no-automatic-crossmount), since with auth on marina never mounts a blob without 'from'"
  crossmount=0
fi
marina_args_common=(--delete-enabled true)
if [ "$crossmount" = 1 ]; then
  marina_args_common+=(--mount-without-from true)
else
  marina_args_common+=(--mount-without-from false)
fi
[ -z "$htpasswd_file" ] || marina_args_common+=(--auth-htpasswd "$htpasswd_file")
[ -z "$marina_config" ] || marina_args_common+=(--config "$marina_config")
[ "$tls" = 0 ] || marina_args_common+=(--tls-cert "$tls_cert" --tls-key "$tls_key")

if [ "$storage" = s3 ]; then
  # Fresh storage on S3 too: this run's keys live under a prefix of their own (shared by the replicas).
  export S3_PREFIX="${S3_PREFIX:+${S3_PREFIX%/}/}conformance-$(date +%s)-$$"
  log "storage: s3 under the fresh prefix $S3_PREFIX"
  s3_vars=$(compgen -e | grep -E '^(S3|AWS)_' | tr '\n' ' ' | sed 's/ $//' || true)
  if [ -n "$s3_vars" ]; then
    log "storage: s3, passing on from the environment: $s3_vars"
  else
    log "storage: s3, but no S3_* or AWS_* variable is set; marina will probably refuse to start"
  fi
else
  log "storage: filesystem in $workdir/storage (fresh, deleted afterwards)"
fi

start_marina() { # $1 = port, $2 = log file; sets new_pid
  local port=$1 logfile=$2
  : >"$logfile"
  if [ "$storage" = s3 ]; then
    STORAGE_DRIVER=s3 "$marina" --listen "127.0.0.1:$port" "${marina_args_common[@]}" \
      </dev/null >>"$logfile" 2>&1 &
  else
    rm -rf "$workdir/storage"
    STORAGE_DRIVER=filesystem "$marina" --listen "127.0.0.1:$port" --storage-path "$workdir/storage" \
      "${marina_args_common[@]}" </dev/null >>"$logfile" 2>&1 &
  fi
  new_pid=$!
}

show_log_tail() { # $1 = log file
  printf '[conformance] --- last lines of %s ---\n' "$1" >&2
  tail -n 20 "$1" >&2 || true
  printf '[conformance] ---\n' >&2
}

# Waits until the process $1 answers GET $2/v2/. Returns 0 when ready (status in $ready_status), 1
# when the process exited (status in $exit_status), 2 on timeout.
wait_ready() {
  local pid=$1 url=$2 deadline code
  deadline=$(( $(date +%s) + start_timeout ))
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      exit_status=0
      wait "$pid" 2>/dev/null || exit_status=$?
      return 1
    fi
    code=$(curl --noproxy '*' -s ${curl_tls[@]+"${curl_tls[@]}"} -o /dev/null -w '%{http_code}' --max-time 2 "$url/v2/" 2>/dev/null || true)
    if [ -n "$code" ] && [ "$code" != 000 ]; then
      # Something answered; make sure it is our process and not one that took the port first.
      sleep 0.2
      if kill -0 "$pid" 2>/dev/null; then
        ready_status=$code
        return 0
      fi
      continue
    fi
    [ "$(date +%s)" -lt "$deadline" ] || return 2
    sleep 0.1
  done
}

# Starts one marina, on another port if its port was taken before it could bind it. $1 = its
# index (0-based); sets marina_pids[$1] and marina_ports[$1]; exits 3 if it cannot start.
start_one_marina() {
  local i=$1 logfile=${marina_logs[$1]} what=marina attempt port ready
  [ -z "$replicas" ] || what="marina replica $(( i + 1 ))"
  for attempt in 1 2 3 4 5; do
    port=$(pick_port) || fail_setup "could not find a free loopback port"
    start_marina "$port" "$logfile"
    marina_pids[$i]=$new_pid
    exit_status=0
    ready_status=
    set +e
    wait_ready "$new_pid" "$scheme://127.0.0.1:$port"
    ready=$?
    set -e
    if [ "$ready" = 0 ]; then
      marina_ports[$i]=$port
      [ "$ready_status" = "$ready_want" ] || log "warning: GET /v2/ of $what answered $ready_status, not $ready_want"
      return 0
    fi
    if [ "$ready" = 1 ]; then
      marina_pids[$i]=
      if grep -qiE 'address (already )?in use' "$logfile" && [ "$attempt" -lt 5 ]; then
        log "port $port was taken before $what could bind it; trying another"
        continue
      fi
      log "$what failed to start (exit status $exit_status; $marina with --storage $storage)"
    else
      log "$what failed to start: GET $scheme://127.0.0.1:$port/v2/ did not answer within ${start_timeout}s"
    fi
    show_log_tail "$logfile"
    exit 3
  done
  fail_setup "$what failed to start"
}

for i in $(seq 0 $(( n_marinas - 1 ))); do
  start_one_marina "$i"
  if [ -z "$replicas" ]; then
    log "marina pid ${marina_pids[$i]} listening on $scheme://127.0.0.1:${marina_ports[$i]} (log: ${marina_logs[$i]})"
  else
    log "marina pid ${marina_pids[$i]} listening on $scheme://127.0.0.1:${marina_ports[$i]} (replica $(( i + 1 )) of $n_marinas; log: ${marina_logs[$i]})"
  fi
done
port=${marina_ports[0]}

# ---------------------------------------------------------------------------------------- proxy
# nginx in the foreground (daemon off), as a child of this script, with a configuration, pid file and
# temp folders of its own in the work dir: nothing of a system nginx is read or touched.
# Request bodies are streamed to marina as they arrive (proxy_request_buffering off). When marina
# answers before the whole body has been passed on (an error to a large PATCH, say), nginx sends the
# answer without "Connection: close" but then closes the client's connection, so the client's next
# request on it can fail with EOF.
write_nginx_conf() { # $1 = listen port
  local conf=$workdir/nginx/nginx.conf p
  mkdir -p "$workdir/nginx/temp"
  # Started as root, nginx runs its workers as an unprivileged user, which must be able to reach
  # the temp folders (mktemp made the work dir 0700).
  chmod 711 "$workdir"
  chmod 755 "$workdir/nginx" "$workdir/nginx/temp"
  {
    cat <<NGINX
# Written by scripts/$prog for one conformance run; deleted afterwards.
daemon off;
worker_processes 1;
pid $workdir/nginx/nginx.pid;
error_log $proxy_log warn;

events {
  worker_connections 1024;
}

http {
  client_body_temp_path $workdir/nginx/temp/body;
  proxy_temp_path $workdir/nginx/temp/proxy;
  fastcgi_temp_path $workdir/nginx/temp/fastcgi;
  uwsgi_temp_path $workdir/nginx/temp/uwsgi;
  scgi_temp_path $workdir/nginx/temp/scgi;

  log_format replicas '\$time_iso8601 "\$request" \$status \$body_bytes_sent '
                      'upstream=\$upstream_addr upstream_status=\$upstream_status '
                      'request_id=\$upstream_http_x_request_id time=\$request_time';
  access_log $proxy_access_log replicas;

  upstream marina {
NGINX
    for p in "${marina_ports[@]}"; do
      printf '    server 127.0.0.1:%s;\n' "$p"
    done
    cat <<NGINX
    keepalive 32;
  }

  server {
NGINX
    if [ "$tls" = 0 ]; then
      cat <<NGINX
    listen 127.0.0.1:$1;
NGINX
    else
      cat <<NGINX
    listen 127.0.0.1:$1 ssl;
    ssl_certificate $tls_cert;
    ssl_certificate_key $tls_key;
NGINX
    fi
    cat <<NGINX
    client_max_body_size 0;

    location / {
NGINX
    if [ "$tls" = 0 ]; then
      cat <<NGINX
      proxy_pass http://marina;
NGINX
    else
      # HTTPS to the marinas too, their certificate checked against the test CA. nginx matches
      # proxy_ssl_name against the certificate's DNS names only, not its IP addresses, hence
      # localhost, which the certificate names besides 127.0.0.1.
      cat <<NGINX
      proxy_pass https://marina;
      proxy_ssl_trusted_certificate $tls_ca;
      proxy_ssl_verify on;
      proxy_ssl_name localhost;
      proxy_ssl_session_reuse on;
NGINX
    fi
    cat <<NGINX
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # The client's Host, port included, so that what marina derives from it is right as seen
      # through the proxy.
      proxy_set_header Host \$http_host;
      proxy_request_buffering off;
      proxy_buffering off;
    }
  }
}
NGINX
  } >"$conf"
}

if [ -n "$replicas" ]; then
  for attempt in 1 2 3 4 5; do
    proxy_port=$(pick_port) || fail_setup "could not find a free loopback port"
    write_nginx_conf "$proxy_port"
    : >"$proxy_log"
    # -e: errors before the configuration is read go to our log too, not to /var/log/nginx.
    "$nginx" -p "$workdir/nginx/" -e "$proxy_log" -c "$workdir/nginx/nginx.conf" \
      </dev/null >>"$proxy_log" 2>&1 &
    proxy_pid=$!
    exit_status=0
    ready_status=
    set +e
    wait_ready "$proxy_pid" "$scheme://127.0.0.1:$proxy_port"
    ready=$?
    set -e
    if [ "$ready" = 0 ]; then
      break
    fi
    if [ "$ready" = 1 ]; then
      proxy_pid=
      if grep -qiE 'address (already )?in use' "$proxy_log" && [ "$attempt" -lt 5 ]; then
        log "port $proxy_port was taken before nginx could bind it; trying another"
        continue
      fi
      log "nginx failed to start (exit status $exit_status; $nginx)"
    else
      log "nginx failed to start: GET $scheme://127.0.0.1:$proxy_port/v2/ did not answer within ${start_timeout}s"
    fi
    show_log_tail "$proxy_log"
    exit 3
  done
  [ "$ready" = 0 ] || fail_setup "nginx failed to start"
  if [ "$ready_status" != "$ready_want" ]; then
    log "warning: GET /v2/ through the proxy answered $ready_status, not $ready_want"
    show_log_tail "$proxy_log"
  fi
  port=$proxy_port
  log "proxy (nginx) pid $proxy_pid listening on $scheme://127.0.0.1:$port, round robin over $n_marinas replicas (logs: $proxy_log, $proxy_access_log)"
fi

root_url=$scheme://127.0.0.1:$port

# ---------------------------------------------------------------------------------------- suite env
# Repository names carry a run id so that runs against shared (s3) storage do not see each other.
run_id=$(date +%s)$$
repo1=conformance-$run_id/repo1
repo2=conformance-$run_id/repo2

# Read-only-data variables make the suites skip pushing and look for content that is not there.
unset OCI_TAG_NAME OCI_MANIFEST_DIGEST OCI_BLOB_DIGEST OCI_TAG_LIST \
      OCI_RO_DATA_TAGS OCI_RO_DATA_MANIFESTS OCI_RO_DATA_BLOBS OCI_RO_DATA_REFERRERS
# A relative configuration file would no longer be found once the suite runs in the output dir.
if [ -n "${OCI_CONFIGURATION:-}" ]; then
  export OCI_CONFIGURATION
  OCI_CONFIGURATION=$(abspath "$OCI_CONFIGURATION")
fi

# Legacy ginkgo suite (v1.1.x tags).
export OCI_ROOT_URL=$root_url
export OCI_NAMESPACE=$repo1
export OCI_CROSSMOUNT_NAMESPACE=$repo2
export OCI_TEST_PULL=1
export OCI_TEST_PUSH=1
export OCI_TEST_CONTENT_DISCOVERY=1
export OCI_TEST_CONTENT_MANAGEMENT=1
export OCI_AUTOMATIC_CROSSMOUNT=$crossmount
export OCI_REPORT_DIR=$out
export OCI_HIDE_SKIPPED_WORKFLOWS=0
export OCI_DEBUG=${OCI_DEBUG:-0}
export OCI_DELETE_MANIFEST_BEFORE_BLOBS=${OCI_DELETE_MANIFEST_BEFORE_BLOBS:-1}
# New runner (main). It maps the legacy names too, but its own names take precedence.
export OCI_REGISTRY=127.0.0.1:$port
if [ "$tls" = 1 ]; then export OCI_TLS=enabled; else export OCI_TLS=disabled; fi
export OCI_REPO1=$repo1
export OCI_REPO2=$repo2
export OCI_RESULTS_DIR=$out
export OCI_VERSION=${OCI_VERSION:-1.1}
if [ -z "${OCI_API_BLOBS_MOUNT_ANONYMOUS:-}" ]; then
  if [ "$crossmount" = 1 ]; then export OCI_API_BLOBS_MOUNT_ANONYMOUS=true; else export OCI_API_BLOBS_MOUNT_ANONYMOUS=false; fi
fi
# Both suites read the same credentials.
if [ "$auth" = 1 ]; then
  export OCI_USERNAME=$auth_user
  export OCI_PASSWORD=$auth_password
fi

# ---------------------------------------------------------------------------------------- run suite
log "running $bin (working directory $out, OCI_ROOT_URL=$OCI_ROOT_URL, OCI_VERSION=$OCI_VERSION, automatic crossmount=$crossmount${replicas:+, $replicas replicas behind the proxy}$([ "$auth" = 0 ] || printf ', signed in as %s' "$auth_user")$([ "$tls" = 0 ] || printf ', SSL_CERT_FILE=%s' "$tls_ca"))"
# In the background so that a signal to this script runs the cleanup at once (wait is interrupted;
# a foreground child would delay the trap until the suite ends). Go reads SSL_CERT_FILE for the
# certificates it trusts; it is set for the suite only, so that marina's own HTTPS clients (to S3)
# keep the system's.
(
  cd "$out"
  if [ "$tls" = 1 ]; then export SSL_CERT_FILE=$tls_ca; fi
  exec "$bin" ${suite_args[@]+"${suite_args[@]}"}
) </dev/null &
suite_pid=$!
set +e
wait "$suite_pid"
suite_status=$?
set -e
suite_pid=

if [ -n "$proxy_pid" ] && ! kill -0 "$proxy_pid" 2>/dev/null; then
  log "warning: nginx exited during the run"
  show_log_tail "$proxy_log"
fi
for i in "${!marina_pids[@]}"; do
  if ! kill -0 "${marina_pids[$i]}" 2>/dev/null; then
    if [ -z "$replicas" ]; then log "warning: marina exited during the run"; else log "warning: marina replica $(( i + 1 )) exited during the run"; fi
    show_log_tail "${marina_logs[$i]}"
  fi
done
stop_proxy
stop_marina

# The new runner writes to OCI_RESULTS_DIR, the legacy suite to OCI_REPORT_DIR (or its working
# directory in old versions); all are the output dir. Pick up strays from a default ./results.
for f in junit.xml report.html; do
  if [ ! -f "$out/$f" ] && [ -f "$out/results/$f" ]; then
    cp "$out/results/$f" "$out/$f"
  fi
done

missing=()
for f in junit.xml report.html; do
  [ -f "$out/$f" ] || missing+=("$f")
done

# ---------------------------------------------------------------------------------------- summary
junit_summary() { # prints "tests failures errors skipped", summed over <testsuite> elements
  local f=$1
  if [ "$have_python" = 1 ]; then
    python3 - "$f" <<'PY'
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
if not suites:
    suites = [root]
def num(el, key):
    try:
        return int(float(el.get(key, "0") or 0))
    except ValueError:
        return 0
totals = [sum(num(s, k) for s in suites) for k in ("tests", "failures", "errors", "skipped")]
print(*totals)
PY
  else
    local tags t=0 fl=0 e=0 s=0 tag
    tags=$(grep -o '<testsuite[[:space:]][^>]*>' "$f" || true)
    [ -n "$tags" ] || tags=$(grep -o '<testsuites[[:space:]][^>]*>' "$f" || true)
    attr() { printf '%s' "$1" | sed -n "s/.*[[:space:]]$2=\"\([0-9]*\)\".*/\1/p"; }
    while IFS= read -r tag; do
      [ -n "$tag" ] || continue
      t=$(( t + $(attr "$tag" tests | grep . || echo 0) ))
      fl=$(( fl + $(attr "$tag" failures | grep . || echo 0) ))
      e=$(( e + $(attr "$tag" errors | grep . || echo 0) ))
      s=$(( s + $(attr "$tag" skipped | grep . || echo 0) ))
    done <<<"$tags"
    echo "$t $fl $e $s"
  fi
}

if [ -f "$out/junit.xml" ]; then
  if counts=$(junit_summary "$out/junit.xml" 2>/dev/null) && [ -n "$counts" ]; then
    read -r n_tests n_fail n_err n_skip <<<"$counts"
    n_pass=$(( n_tests - n_fail - n_err - n_skip ))
    [ "$n_pass" -ge 0 ] || n_pass=0
    if [ "$suite_status" = 0 ]; then verdict=PASS; else verdict=FAIL; fi
    echo "conformance summary: $verdict tests=$n_tests passed=$n_pass failures=$n_fail errors=$n_err skipped=$n_skip exit=$suite_status (reports in $out)"
  else
    echo "conformance summary: FAIL could not parse $out/junit.xml exit=$suite_status (reports in $out)"
    [ "$suite_status" != 0 ] || suite_status=3
  fi
else
  echo "conformance summary: FAIL no junit.xml was written exit=$suite_status (reports in $out)"
fi

if [ ${#missing[@]} -gt 0 ]; then
  log "error: the suite did not write ${missing[*]} into $out"
  # The new runner exits 0 when its configuration cannot be loaded; never report that as a pass.
  [ "$suite_status" != 0 ] || suite_status=3
fi

exit "$suite_status"
