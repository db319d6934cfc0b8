#!/usr/bin/env python3
"""python-dxf against marina, in e2e/dxf: blobs (file upload, streamed chunked upload,
cross-repository mount), manifests by tag (dxf's own alias manifests, an OCI manifest and an
OCI index), tag and catalog listing with pagination, and deletes of manifests and blobs.

Run by tests/clients/run.sh with the venv's python:
  dxf_test.py --registry 127.0.0.1:PORT --work DIR --mount-from e2e/skopeo --mount-digest sha256:...
"""

import argparse
import json
import os

from dxf import DXF, DXFBase

from e2e_lib import (check, check_eq, digest_of, expect_error, file_digest, group, main, read,
                     step, write_random)

REPO = "e2e/dxf"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


class Ctx:
    pass


def pull_bytes(dxf, digest):
    return b"".join(dxf.pull_blob(digest))


def blobs(ctx):
    d = ctx.dxf
    for name in ("small.bin", "medium.bin"):
        path = os.path.join(ctx.work, name)
        digest = step(f"dxf push_blob {name}", d.push_blob, path)
        check_eq(f"dxf push_blob {name}: returned digest is the file's sha256", file_digest(path), digest)
        check_eq(f"dxf blob_size {name}", os.path.getsize(path), d.blob_size(digest))
        data = step(f"dxf pull_blob {name} (dxf verifies the digest while reading)", pull_bytes, d, digest)
        check(f"dxf pull_blob {name}: byte-identical", data == read(path))
        check_eq(f"dxf push_blob {name} again: already there, same digest", digest, d.push_blob(path))
        ctx.blobs[name] = digest

    # Streamed upload: PUT with Transfer-Encoding: chunked, digest given by the caller.
    chunks = [bytes([i]) * 65536 for i in range(1, 9)] + [b"tail"]
    want = digest_of(b"".join(chunks))
    got = step("dxf push_blob from an iterator (chunked transfer encoding)", d.push_blob,
               data=iter(chunks), digest=want)
    check_eq("dxf streamed blob: digest", want, got)
    check("dxf streamed blob: pulled back byte-identical", pull_bytes(d, want) == b"".join(chunks))
    ctx.blobs["streamed"] = want

    # Cross-repository mount of a layer pushed by skopeo.
    got = step(f"dxf mount_blob {ctx.mount_digest[:19]}... from {ctx.mount_from}", d.mount_blob,
               ctx.mount_from, ctx.mount_digest)
    check_eq("dxf mount_blob: returned digest", ctx.mount_digest, got)
    src = DXF(ctx.reg, ctx.mount_from, insecure=True)
    check("dxf mounted blob: same bytes as in the source repository",
          pull_bytes(d, ctx.mount_digest) == pull_bytes(src, ctx.mount_digest))


def manifests(ctx):
    d, b = ctx.dxf, ctx.blobs
    # dxf's own manifests (Docker schema 2, config = first blob).
    m1 = step("dxf set_alias v1 (small, medium)", d.set_alias, "v1", b["small.bin"], b["medium.bin"])
    check_eq("dxf get_manifest v1: exactly the bytes pushed", m1, d.get_manifest("v1"))
    check_eq("dxf get_alias v1: blob digests", [b["small.bin"], b["medium.bin"]], d.get_alias("v1"))
    check_eq("dxf get_alias v1 sizes", [(b["small.bin"], 1000), (b["medium.bin"], 2 << 20)],
             d.get_alias("v1", sizes=True))
    dcd, _ = d.head_manifest_and_response("v1")
    check_eq("dxf head_manifest v1: Docker-Content-Digest is sha256 of the manifest", digest_of(m1.encode()), dcd)
    step("dxf set_alias v2 (streamed)", d.set_alias, "v2", b["streamed"])
    check_eq("dxf get_alias v2", [b["streamed"]], d.get_alias("v2"))

    # An OCI image manifest with a real config, then an OCI index of it.
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}},
                        sort_keys=True).encode()
    cfg_path = os.path.join(ctx.work, "config.json")
    with open(cfg_path, "wb") as f:
        f.write(config)
    cfg_digest = step("dxf push_blob config.json", d.push_blob, cfg_path)
    oci = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest,
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": b["medium.bin"],
                    "size": 2 << 20}],
    }, indent=1)
    step("dxf set_manifest oci (OCI image manifest)", d.set_manifest, "oci", oci)
    check_eq("dxf get_manifest oci: exactly the bytes pushed", oci, d.get_manifest("oci"))
    check_eq("dxf get_digest oci: config digest", cfg_digest, d.get_digest("oci"))
    index = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest_of(oci.encode()), "size": len(oci),
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    })
    step("dxf set_manifest multi (OCI index)", d.set_manifest, "multi", index)
    check_eq("dxf get_manifest multi: per-platform manifests", {"linux/amd64": oci}, d.get_manifest("multi"))
    check_eq("dxf get_alias multi platform=linux/amd64", [b["medium.bin"]],
             d.get_alias("multi", platform="linux/amd64"))
    check_eq("dxf head_manifest multi: Docker-Content-Digest is sha256 of the index", digest_of(index.encode()),
             d.head_manifest_and_response("multi")[0])
    ctx.manifests = {"v1": m1, "oci": oci, "multi": index}


def listing(ctx):
    d = ctx.dxf
    want = ["multi", "oci", "v1", "v2"]
    check_eq("dxf list_aliases", want, sorted(d.list_aliases()))
    check_eq("dxf list_aliases batch_size=1 (Link pagination) gives the same tags", want,
             sorted(d.list_aliases(batch_size=1)))
    base = DXFBase(ctx.reg, insecure=True)
    repos = step("dxf list_repos", base.list_repos)
    check("dxf list_repos: includes e2e/dxf and the mount source", REPO in repos and ctx.mount_from in repos, repos)
    check_eq("dxf list_repos: sorted, no duplicates", sorted(set(repos)), repos)
    check("dxf list_repos: only this run's e2e/* repositories (fresh storage)",
          all(r.startswith("e2e/") for r in repos), repos)
    check_eq("dxf list_repos batch_size=2 (Link pagination) gives the same list", repos,
             list(base.list_repos(batch_size=2)))


def delete_manifest(ctx):
    d, b = ctx.dxf, ctx.blobs
    blobs_of_v2 = step("dxf del_alias v2 (DELETE manifest by digest)", d.del_alias, "v2")
    check_eq("dxf del_alias v2: returned its blobs", [b["streamed"]], blobs_of_v2)
    expect_error("after del_alias: get_manifest v2 answers 404", d.get_manifest, "v2", status=404)
    check_eq("after del_alias: list_aliases", ["multi", "oci", "v1"], sorted(d.list_aliases()))
    check_eq("after del_alias: v1 untouched", ctx.manifests["v1"], d.get_manifest("v1"))


def delete_blob(ctx):
    d, b = ctx.dxf, ctx.blobs
    step("dxf del_blob (streamed blob)", d.del_blob, b["streamed"])
    expect_error("after del_blob: blob_size answers 404", d.blob_size, b["streamed"], status=404)
    expect_error("after del_blob: pull_blob answers 404", pull_bytes, d, b["streamed"], status=404)
    expect_error("dxf del_blob of the same blob again answers 404", d.del_blob, b["streamed"], status=404)
    check_eq("after del_blob: other blobs still readable", read(os.path.join(ctx.work, "medium.bin")),
             pull_bytes(d, b["medium.bin"]))


def body():
    p = argparse.ArgumentParser()
    p.add_argument("--registry", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--mount-from", required=True)
    p.add_argument("--mount-digest", required=True)
    a = p.parse_args()

    ctx = Ctx()
    ctx.reg, ctx.work, ctx.mount_from, ctx.mount_digest = a.registry, a.work, a.mount_from, a.mount_digest
    ctx.blobs = {}
    write_random(os.path.join(a.work, "small.bin"), 1000, 20)
    write_random(os.path.join(a.work, "medium.bin"), 2 << 20, 21)
    with DXF(a.registry, REPO, insecure=True, timeout=60) as ctx.dxf:
        step("dxf api_version_check (GET /v2/)", ctx.dxf.api_version_check)
        group(blobs, ctx)
        group(manifests, ctx)
        group(listing, ctx)
        group(delete_manifest, ctx)
        group(delete_blob, ctx)


if __name__ == "__main__":
    main(body)
