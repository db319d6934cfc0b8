#!/usr/bin/env python3
"""oras (oras-py) with credentials against a marina with htpasswd and tokens: it signs in
through the token dance, pushes and pulls back the same bytes, and is refused without
credentials. (python-dxf refuses to send credentials over plain HTTP: it joins once marina
serves TLS.)

Run by tests/clients/run.sh with the venv's python:
  auth_test.py --registry 127.0.0.1:PORT --work DIR
"""

import argparse
import os

import oras.client
from oras.logger import setup_logger

from e2e_lib import check_eq, expect_error, file_digest, group, main, step, write_random


def oras_with_login(ctx):
    path = os.path.join(ctx.work, "auth-artifact.bin")
    write_random(path, 300_000, 41)
    # oras-py fetches a new token only after a 403, not after a 401 insufficient_scope (what the
    # token spec and marina answer when a pull token meets a push), so its token backend cannot
    # push: it signs in with Basic on every request, which marina accepts beside tokens.
    client = oras.client.OrasClient(hostname=ctx.reg, insecure=True, auth_backend="basic")
    step("oras login as alice", lambda: client.login(username="alice", password="alice-pw",
                                                       hostname=ctx.reg, tls_verify=False,
                                                       config_path=os.path.join(ctx.work, "oras.json")))
    target = f"{ctx.reg}/team/oras:v1"
    step("oras push team/oras:v1 with alice's credentials",
         lambda: client.push(files=[path], target=target, disable_path_validation=True))
    out = os.path.join(ctx.work, "auth-pulled")
    pulled = step("oras pull team/oras:v1", lambda: client.pull(target=target, outdir=out))
    if pulled:
        check_eq("oras: pulled bytes are the pushed bytes", file_digest(path), file_digest(pulled[0]))
    anonymous = oras.client.OrasClient(hostname=ctx.reg, insecure=True, auth_backend="basic")
    expect_error("oras: an anonymous push is refused", anonymous.push, files=[path],
                 target=f"{ctx.reg}/team/oras:anon", disable_path_validation=True)


def run():
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", required=True)
    parser.add_argument("--work", required=True)
    args = parser.parse_args()
    setup_logger(quiet=True)
    ctx = argparse.Namespace(reg=args.registry, work=args.work)
    group(oras_with_login, ctx)


if __name__ == "__main__":
    main(run)
