#!/usr/bin/env python3
"""oras (oras-py) and python-dxf with credentials against a marina serving HTTPS (a test CA)
with htpasswd and tokens: each signs in, pushes, pulls back the same bytes, and is refused
without credentials or with a wrong password.

Run by tests/clients/run.sh with the venv's python:
  auth_test.py --registry 127.0.0.1:PORT --work DIR --ca CA.pem
"""

import argparse
import json
import os

import oras.client
from dxf import DXF
from dxf.exceptions import DXFUnauthorizedError
from oras.logger import setup_logger

from e2e_lib import (check, check_eq, expect_error, fail, file_digest, group, main, ok, read,
                     step, write_random)


def oras_with_login(ctx):
    path = os.path.join(ctx.work, "auth-artifact.bin")
    write_random(path, 300_000, 41)
    # oras-py fetches a new token only after a 403, not after a 401 insufficient_scope (what the
    # token spec and marina answer when a pull token meets a push), so its token backend cannot
    # push: it signs in with Basic on every request, which marina accepts beside tokens.
    # TLS is verified against the test CA, which run.sh names in REQUESTS_CA_BUNDLE.
    client = oras.client.OrasClient(hostname=ctx.reg, auth_backend="basic")
    step("oras login as alice", lambda: client.login(username="alice", password="alice-pw",
                                                       hostname=ctx.reg,
                                                       config_path=os.path.join(ctx.work, "oras.json")))
    target = f"{ctx.reg}/team/oras:v1"
    step("oras push team/oras:v1 with alice's credentials",
         lambda: client.push(files=[path], target=target, disable_path_validation=True))
    out = os.path.join(ctx.work, "auth-pulled")
    pulled = step("oras pull team/oras:v1", lambda: client.pull(target=target, outdir=out))
    if pulled:
        check_eq("oras: pulled bytes are the pushed bytes", file_digest(path), file_digest(pulled[0]))
    anonymous = oras.client.OrasClient(hostname=ctx.reg, auth_backend="basic")
    expect_error("oras: an anonymous push is refused", anonymous.push, files=[path],
                 target=f"{ctx.reg}/team/oras:anon", disable_path_validation=True)


def dxf_with_login(ctx):
    def signed_in(user, password):
        def authenticate(dxf, response):
            dxf.authenticate(user, password, response=response)
        return DXF(ctx.reg, "team/dxf", auth=authenticate, tlsverify=ctx.ca)

    path = os.path.join(ctx.work, "dxf-blob.bin")
    write_random(path, 200_000, 43)
    bob = signed_in("bob", "bob-pw")
    digest = step("dxf push_blob to team/dxf as bob (token dance, TLS checked against the CA)",
                  bob.push_blob, path)
    check_eq("dxf: the pushed digest is the file's", file_digest(path), digest)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY,
                   "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": digest,
                    "size": os.path.getsize(path)}],
    })
    step("dxf push_blob of the empty config", bob.push_blob, data=iter([b"{}"]), digest=EMPTY)
    step("dxf set_manifest team/dxf:v1 as bob", bob.set_manifest, "v1", manifest)
    alice = signed_in("alice", "alice-pw")
    pulled = step("dxf pull_blob as alice", lambda: b"".join(alice.pull_blob(digest)))
    check("dxf: pulled bytes are the pushed bytes", pulled == read(path))
    check_eq("dxf: alice lists the tag bob pushed", ["v1"], step("dxf list_aliases",
                                                                  alice.list_aliases))
    refused("dxf: a wrong password is refused", signed_in("bob", "nope").push_blob, path)
    anonymous = DXF(ctx.reg, "team/dxf", tlsverify=ctx.ca)
    refused("dxf: an anonymous pull from team/ is refused",
            lambda: b"".join(anonymous.pull_blob(digest)))


def refused(desc, fn, *args):
    """ok when fn fails as unauthorized (python-dxf's own error for a 401 it cannot answer)."""
    try:
        fn(*args)
    except DXFUnauthorizedError:
        ok(desc)
        return
    except Exception as e:  # noqa: BLE001 - any other failure is the wrong refusal
        fail(f"{desc}: expected DXFUnauthorizedError, got {type(e).__name__}: {e}")
        return
    fail(f"{desc}: it succeeded")


EMPTY = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def run():
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--ca", required=True, help="the CA that signed marina's certificate")
    args = parser.parse_args()
    setup_logger(quiet=True)
    ctx = argparse.Namespace(reg=args.registry, work=args.work, ca=args.ca)
    group(oras_with_login, ctx)
    group(dxf_with_login, ctx)


if __name__ == "__main__":
    main(run)
