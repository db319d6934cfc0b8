#!/usr/bin/env bash
# Checks that the files in deploy/ are what their tools accept:
#   - every YAML document in deploy/kubernetes parses and has apiVersion, kind and
#     metadata.name (and each Deployment's probes, ports and resources are there);
#   - deploy/grafana/marina-dashboard.json parses, uses the ${DS_PROMETHEUS} input, and every
#     PromQL expression names only marina's metrics (each of which some panel shows);
#   - deploy/systemd/marina.service passes `systemd-analyze verify` without a warning, and
#     `systemd-analyze security --offline` rates its exposure at most 2.0.
#
#   bash tests/container/deploy_check.sh
#
# systemd-analyze verify insists that ExecStart's binary exists. A copy of the unit whose
# ExecStart names the built binary (target/release/marina, or $MARINA_BIN) is verified instead
# of /usr/local/bin/marina; without a built binary the check FAILs rather than verify less.
# Needs python3 with PyYAML (Debian: python3-yaml) and systemd-analyze (Debian: systemd); no
# root, no network. Prints `ok  - ...`/`FAIL - ...` lines and `N passed, M failed`.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=tests/clients/lib.sh
source "$REPO_ROOT/tests/clients/lib.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/marina-deploy.XXXXXX")
RESULTS=$WORK/results
: >"$RESULTS"
trap 'rm -rf -- "$WORK"' EXIT
cd "$REPO_ROOT"

# Debian's python has PyYAML from python3-yaml; a python earlier on PATH (pyenv) may not.
PYTHON=python3
[ -x /usr/bin/python3 ] && PYTHON=/usr/bin/python3
if ! "$PYTHON" -c 'import yaml' 2>/dev/null; then
  fail "$PYTHON cannot import yaml: run scripts/setup.sh (apt install python3-yaml)"
fi

# ---- Kubernetes ------------------------------------------------------------------------------

"$PYTHON" - deploy/kubernetes/*.yaml <<'EOF' | while IFS= read -r line; do
import sys, yaml

def report(ok, text):
    print(("ok " if ok else "FAIL ") + text)

for path in sys.argv[1:]:
    try:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
    except yaml.YAMLError as e:
        report(False, f"{path}: does not parse: {str(e).splitlines()[0]}")
        continue
    missing = [f"document {i + 1}" for i, d in enumerate(docs)
               if not (isinstance(d, dict) and d.get("apiVersion") and d.get("kind")
                       and isinstance(d.get("metadata"), dict) and d["metadata"].get("name"))]
    kinds = ", ".join(f"{d.get('kind')}/{d.get('metadata', {}).get('name')}" for d in docs
                      if isinstance(d, dict))
    report(bool(docs) and not missing,
           f"{path} parses; every document has apiVersion, kind, metadata.name ({kinds})"
           + (f"; missing in {', '.join(missing)}" if missing else ""))
    for d in docs:
        if not isinstance(d, dict) or d.get("kind") != "Deployment":
            continue
        name = d["metadata"]["name"]
        pod = d["spec"]["template"]
        problems = []
        if d["spec"]["selector"]["matchLabels"].items() - pod["metadata"]["labels"].items():
            problems.append("selector does not match the pod labels")
        notes = pod["metadata"].get("annotations", {})
        if (notes.get("prometheus.io/scrape"), notes.get("prometheus.io/port")) != ("true", "5001"):
            problems.append("prometheus.io scrape annotations for port 5001 missing")
        for c in pod["spec"]["containers"]:
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            if ports != {"http": 5000, "metrics": 5001}:
                problems.append(f"ports {ports}")
            for probe, path_ in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                get = c.get(probe, {}).get("httpGet", {})
                if get.get("path") != path_ or get.get("port") not in ("http", 5000):
                    problems.append(f"{probe} is not GET {path_} on port 5000")
            res = c.get("resources", {})
            if not (res.get("requests", {}).get("memory") and res.get("limits", {}).get("memory")):
                problems.append("memory requests and limits missing")
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            if env.get("MARINA_METRICS_LISTEN") != "0.0.0.0:5001":
                problems.append("MARINA_METRICS_LISTEN is not 0.0.0.0:5001")
            if env.get("STORAGE_DRIVER") == "s3" and "STORAGE_PATH" in env:
                problems.append("STORAGE_PATH set with the s3 driver (marina refuses it)")
        report(not problems, f"{path}: Deployment {name}: probes, ports, resources, metrics"
               + (": " + "; ".join(problems) if problems else ""))
EOF
  case "$line" in
    "ok "*) ok "${line#ok }" ;;
    *) fail "${line#FAIL }" ;;
  esac
done

# ---- Grafana ---------------------------------------------------------------------------------

"$PYTHON" - deploy/grafana/marina-dashboard.json <<'EOF' | while IFS= read -r line; do
import json, re, sys

HISTOGRAMS = {"marina_http_request_duration_seconds", "marina_store_operation_duration_seconds"}
PLAIN = {
    "marina_http_request_bytes_total", "marina_http_response_bytes_total",
    "marina_http_requests_in_flight", "marina_upload_sessions_open", "marina_store_errors_total",
    "marina_auth_failures_total", "marina_notifications_total", "marina_ready",
    "process_resident_memory_bytes", "process_open_fds", "process_cpu_seconds_total",
}
ALLOWED = PLAIN | {h + s for h in HISTOGRAMS for s in ("_bucket", "_sum", "_count")}
# PromQL words that are not metric names.
WORDS = {
    "sum", "avg", "min", "max", "count", "rate", "irate", "increase", "histogram_quantile",
    "label_values", "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
    "unless", "bool", "offset", "topk", "bottomk", "clamp_min", "clamp_max", "abs", "vector",
    "delta", "deriv", "changes", "resets", "time", "avg_over_time", "max_over_time",
}

def report(ok, text):
    print(("ok " if ok else "FAIL ") + text)

path = sys.argv[1]
try:
    dash = json.load(open(path))
except ValueError as e:
    report(False, f"{path} does not parse: {e}")
    sys.exit(0)
report(True, f"{path} parses ({len(dash.get('panels', []))} panels)")
inputs = [i.get("name") for i in dash.get("__inputs", [])]
report(inputs == ["DS_PROMETHEUS"], f"dashboard input is DS_PROMETHEUS (found {inputs})")

exprs = []  # (where, expression)
def walk(node, where):
    if isinstance(node, dict):
        title = node.get("title") or node.get("name") or where
        for k, v in node.items():
            if k == "expr" and isinstance(v, str):
                exprs.append((title, v))
            elif k == "query" and isinstance(v, dict) and isinstance(v.get("query"), str):
                exprs.append((title, v["query"]))
            else:
                walk(v, title)
    elif isinstance(node, list):
        for v in node:
            walk(v, where)
walk(dash, "dashboard")

sources = {d.get("uid") for p in dash.get("panels", []) for d in
           [p.get("datasource") or {}] + [t.get("datasource") or {} for t in p.get("targets", [])]
           if p.get("type") != "row"}
report(sources == {"${DS_PROMETHEUS}"}, f"every panel and query uses ${{DS_PROMETHEUS}} (found {sorted(map(str, sources))})")

def metric_names(expr):
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # string literals
    e = re.sub(r"\{[^}]*\}", "", e)                        # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                       # range selectors
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$\{?\w+\}?", " ", e)                     # dashboard variables
    e = re.sub(r"label_values\(([^,()]*),\s*\w+\s*\)", r"(\1)", e)  # its label argument
    names = re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", e)
    return {n for n in names if n not in WORDS}

used, bad = set(), []
for where, expr in exprs:
    names = metric_names(expr)
    used |= names
    unknown = names - ALLOWED
    if unknown or not names:
        bad.append(f"{where}: {expr} ({'no metric' if not names else ', '.join(sorted(unknown))})")
report(bool(exprs) and not bad,
       f"all {len(exprs)} PromQL expressions name only marina's metrics"
       + ("; " + " | ".join(bad) if bad else ""))
shown = {n for n in ALLOWED if n in used}
unused = sorted(m for m in PLAIN | HISTOGRAMS
                if m not in shown and not any(m + s in shown for s in ("_bucket", "_sum", "_count")))
report(not unused, "every metric of marina appears in some panel" + (f"; not shown: {unused}" if unused else ""))
EOF
  case "$line" in
    "ok "*) ok "${line#ok }" ;;
    *) fail "${line#FAIL }" ;;
  esac
done

# ---- systemd ---------------------------------------------------------------------------------

UNIT=deploy/systemd/marina.service
MARINA_BIN=${MARINA_BIN:-$REPO_ROOT/target/release/marina}
if ! command -v systemd-analyze >/dev/null; then
  fail "systemd-analyze not found: run scripts/setup.sh (apt install systemd)"
elif [ ! -x "$MARINA_BIN" ]; then
  fail "$UNIT: no marina binary at $MARINA_BIN to verify the unit against (cargo build --release)"
else
  lacking=()
  grep -q '^ExecStart=/usr/local/bin/marina$' "$UNIT" || fail "$UNIT: ExecStart is not /usr/local/bin/marina"
  sed "s|^ExecStart=/usr/local/bin/marina\$|ExecStart=$MARINA_BIN|" "$UNIT" >"$WORK/marina.service"
  if out=$(systemd-analyze verify "$WORK/marina.service" 2>&1) && [ -z "$out" ]; then
    ok "systemd-analyze verify $UNIT (ExecStart=$MARINA_BIN): no warning"
  else
    fail "systemd-analyze verify $UNIT (ExecStart=$MARINA_BIN)"
    show_output "$out"
  fi
  exposure=$(systemd-analyze security --offline=yes "$WORK/marina.service" 2>/dev/null |
    sed -n 's/.*Overall exposure level for marina.service: \([0-9.]*\).*/\1/p')
  if [ -n "$exposure" ] && awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }'; then
    ok "systemd-analyze security --offline: exposure $exposure (at most 2.0)"
  else
    fail "systemd-analyze security --offline: exposure '${exposure:-unknown}', expected at most 2.0"
  fi
  for key in DynamicUser=yes ProtectSystem=strict StateDirectory=marina \
             Environment=STORAGE_PATH=/var/lib/marina NoNewPrivileges=yes ProtectHome=yes \
             PrivateTmp=yes PrivateDevices=yes 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' \
             SystemCallFilter=@system-service CapabilityBoundingSet= \
             'ExecReload=/bin/kill -HUP $MAINPID' KillSignal=SIGTERM TimeoutStopSec=30; do
    grep -qxF "$key" "$UNIT" || lacking+=("$key")
  done
  check_eq "$UNIT has the hardening and lifecycle settings asked for" "" "${lacking[*]}"
fi

passed=$(grep -c '^ok$' "$RESULTS" || true)
failed=$(grep -c '^FAIL$' "$RESULTS" || true)
printf '%s passed, %s failed\n' "$passed" "$failed"
[ "$failed" = 0 ] && [ "$passed" != 0 ]
