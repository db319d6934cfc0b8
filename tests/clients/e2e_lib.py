"""Result recording shared by oras_test.py and dxf_test.py (see run.sh).

Each check prints `ok  - ...` or `FAIL - ...` and appends `ok` or `FAIL` to the file named by the
RESULTS environment variable, which run.sh counts. A failed `step` aborts the group of checks
that depends on it (`group`), not the whole script.
"""

import hashlib
import os
import random
import sys
import traceback

RESULTS = os.environ.get("RESULTS")

ACCEPT_MANIFESTS = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])


class Abort(Exception):
    """A step failed (and was recorded); the checks depending on it are skipped."""


def _record(word, line):
    print(line, flush=True)
    if RESULTS:
        with open(RESULTS, "a") as f:
            f.write(word + "\n")


def ok(msg):
    _record("ok", f"ok  - {msg}")


def fail(msg, detail=None):
    _record("FAIL", f"FAIL - {msg}")
    if detail:
        for line in str(detail).splitlines()[-15:]:
            print(f"#   {line}", flush=True)


def check(desc, cond, detail=None):
    if cond:
        ok(desc)
    else:
        fail(desc, detail)
    return bool(cond)


def check_eq(desc, expected, actual):
    if expected == actual:
        ok(desc)
        return True
    fail(f"{desc}: expected {expected!r}, got {actual!r}")
    return False


def step(desc, fn, *args, **kwargs):
    """Runs fn; ok and its result on success, otherwise FAIL and Abort."""
    try:
        result = fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - any client error is a failed check
        fail(f"{desc}: {type(e).__name__}: {e}", _response_detail(e))
        raise Abort() from e
    ok(desc)
    return result


def expect_error(desc, fn, *args, status=None, **kwargs):
    """ok when fn raises (an HTTP error with `status`, when given)."""
    try:
        fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001
        got = getattr(getattr(e, "response", None), "status_code", None)
        if status is None or got == status:
            ok(desc)
            return True
        fail(f"{desc}: expected HTTP {status}, got {type(e).__name__}: {e}")
        return False
    fail(f"{desc}: call unexpectedly succeeded")
    return False


def _response_detail(e):
    resp = getattr(e, "response", None)
    if resp is None:
        return traceback.format_exc()
    return f"{resp.request.method} {resp.url} -> {resp.status_code}\n{resp.text[:2000]}"


def group(fn, *args):
    try:
        fn(*args)
    except Abort:
        pass


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(path):
    with open(path, "rb") as f:
        return digest_of(f.read())


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write_random(path, size, seed):
    rng = random.Random(seed)
    with open(path, "wb") as f:
        f.write(rng.randbytes(size))


def main(body):
    """Runs body(); exit 0 when it ran to the end, 2 (after a recorded FAIL) when it died."""
    try:
        body()
    except Exception as e:  # noqa: BLE001
        fail(f"{os.path.basename(sys.argv[0])}: unexpected {type(e).__name__}: {e}",
             traceback.format_exc())
        sys.exit(2)
    sys.exit(0)
