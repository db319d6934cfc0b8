#!/usr/bin/env python3
"""oras (oras-py) against marina: file artifacts pushed and pulled (monolithic and chunked
uploads) in e2e/oras, then artifacts whose `subject` is an image pushed earlier, found again
through the referrers API with and without an artifactType filter.

Run by tests/clients/run.sh with the venv's python:
  oras_test.py --registry 127.0.0.1:PORT --work DIR --subject-repo e2e/skopeo --subject-ref multi
"""

import argparse
import json
import os

import oras.client
import oras.oci
import requests
from oras.logger import setup_logger

from e2e_lib import (ACCEPT_MANIFESTS, check, check_eq, digest_of, fail, file_digest, group,
                     main, ok, read, step, write_random)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SBOM_TYPE = "application/vnd.e2e.sbom.v1+json"
SIG_TYPE = "application/vnd.e2e.signature.v1+json"
MiB = 1 << 20


class Ctx:
    pass


def http(ctx, method, path, **kwargs):
    return requests.request(method, f"http://{ctx.reg}{path}", timeout=60, **kwargs)


def get_manifest_raw(ctx, repo, ref):
    r = http(ctx, "GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT_MANIFESTS})
    r.raise_for_status()
    return r


def check_pushed_manifest(ctx, desc, resp, repo, ref):
    """The PUT response's digest matches what HEAD and GET serve; returns (digest, bytes, dict)."""
    dcd = resp.headers.get("Docker-Content-Digest")
    got = get_manifest_raw(ctx, repo, ref)
    head = http(ctx, "HEAD", f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT_MANIFESTS})
    check(f"{desc}: Docker-Content-Digest of the push, HEAD and the GET body's sha256 agree",
          dcd and dcd == digest_of(got.content) == head.headers.get("Docker-Content-Digest"),
          f"push={dcd} head={head.headers.get('Docker-Content-Digest')} get={digest_of(got.content)}")
    return dcd, got.content, json.loads(got.content)


def push_files(ctx):
    c = ctx.client
    resp = step("oras push artifact.txt + data.bin -> e2e/oras:v1", c.push,
                target=f"{ctx.reg}/e2e/oras:v1",
                files=["artifact.txt:text/plain", "data.bin"],
                manifest_annotations={"org.example.e2e": "oras"}, quiet=True)
    digest, _, manifest = check_pushed_manifest(ctx, "oras e2e/oras:v1", resp, "e2e/oras", "v1")
    ctx.v1_digest = digest
    layers = {l["annotations"]["org.opencontainers.image.title"]: l for l in manifest["layers"]}
    check_eq("oras e2e/oras:v1: layer titles", ["artifact.txt", "data.bin"], sorted(layers))
    for name in sorted(layers):
        l = layers[name]
        check(f"oras e2e/oras:v1: layer {name} has the file's digest and size",
              l["digest"] == file_digest(name) and l["size"] == os.path.getsize(name), l)
        blob = http(ctx, "GET", f"/v2/e2e/oras/blobs/{l['digest']}")
        check(f"oras e2e/oras:v1: blob of {name} served byte-identical",
              blob.status_code == 200 and blob.content == read(name), blob.status_code)
    check_eq("oras e2e/oras:v1: layer media types", ["text/plain",
             "application/vnd.oci.image.layer.v1.tar"],
             [layers["artifact.txt"]["mediaType"], layers["data.bin"]["mediaType"]])
    check_eq("oras e2e/oras:v1: manifest annotation", "oras",
             manifest.get("annotations", {}).get("org.example.e2e"))


def push_chunked(ctx):
    # 13 MiB in 6 MiB chunks: POST, PATCH 0-6MiB, PATCH 6-12MiB, PATCH 12-13MiB, PUT ?digest=.
    resp = step("oras push --chunked big.bin (13 MiB, 6 MiB chunks) -> e2e/oras:chunked",
                ctx.client.push, target=f"{ctx.reg}/e2e/oras:chunked", files=["big.bin"],
                do_chunked=True, chunk_size=6 * MiB, quiet=True)
    _, _, manifest = check_pushed_manifest(ctx, "oras e2e/oras:chunked", resp, "e2e/oras", "chunked")
    layer = manifest["layers"][0]
    check_eq("oras e2e/oras:chunked: layer digest is the file's", file_digest("big.bin"), layer["digest"])
    blob = http(ctx, "GET", f"/v2/e2e/oras/blobs/{layer['digest']}")
    check("oras e2e/oras:chunked: blob assembled from the chunks is byte-identical",
          blob.status_code == 200 and blob.content == read("big.bin"),
          f"status {blob.status_code}, {len(blob.content)} bytes, {digest_of(blob.content)}")


def pull_files(ctx):
    for ref, names in (("v1", ["artifact.txt", "data.bin"]), ("chunked", ["big.bin"])):
        outdir = os.path.join(ctx.work, "pulled", ref)
        files = step(f"oras pull e2e/oras:{ref}", ctx.client.pull,
                     target=f"{ctx.reg}/e2e/oras:{ref}", outdir=outdir)
        check_eq(f"oras pull e2e/oras:{ref}: file names", names,
                 sorted(os.path.basename(f) for f in files))
        for name in names:
            path = os.path.join(outdir, name)
            check(f"oras pull e2e/oras:{ref}: {name} byte-identical to what was pushed",
                  os.path.exists(path) and read(path) == read(name))
    tags = step("oras get_tags e2e/oras answers", ctx.client.get_tags, f"{ctx.reg}/e2e/oras")
    check_eq("oras get_tags e2e/oras", ["chunked", "v1"], sorted(tags))


def referrers(ctx):
    repo = ctx.subject_repo
    got = step(f"GET subject {repo}:{ctx.subject_ref}", get_manifest_raw, ctx, repo, ctx.subject_ref)
    subject_digest = digest_of(got.content)
    # umoci's manifests carry no mediaType field: take the descriptor's from Content-Type.
    subject_type = json.loads(got.content).get("mediaType") or got.headers["Content-Type"].split(";")[0]
    check_eq(f"subject {repo}:{ctx.subject_ref} is an OCI image manifest", OCI_MANIFEST, subject_type)
    subject = oras.oci.Subject(mediaType=subject_type, digest=subject_digest, size=len(got.content))

    pushed = {}
    for tag, art_type, fname, ftype in (
            ("sbom", SBOM_TYPE, "sbom.spdx.json", "application/spdx+json"),
            ("sig", SIG_TYPE, "signature.txt", "text/plain")):
        resp = step(f"oras push {fname} with subject {repo}@{subject_digest[:19]}... -> {repo}:{tag}",
                    ctx.client.push, target=f"{ctx.reg}/{repo}:{tag}",
                    files=[f"{fname}:{ftype}"], manifest_config=f"config-{tag}.json:{art_type}",
                    manifest_annotations={"org.example.e2e": tag}, subject=subject, quiet=True)
        check_eq(f"PUT of the {tag} artifact answers OCI-Subject with the subject's digest",
                 subject_digest, resp.headers.get("OCI-Subject"))
        digest, raw, manifest = check_pushed_manifest(ctx, f"oras {repo}:{tag}", resp, repo, tag)
        check_eq(f"{repo}:{tag}: served manifest carries the subject", subject_digest,
                 (manifest.get("subject") or {}).get("digest"))
        pushed[tag] = (digest, raw, manifest, art_type)

    path = f"/v2/{repo}/referrers/{subject_digest}"
    r = http(ctx, "GET", path)
    check_eq(f"GET {path}: status", 200, r.status_code)
    check_eq("referrers: Content-Type", OCI_INDEX, r.headers.get("Content-Type", "").split(";")[0])
    body = r.json() if r.status_code == 200 else {}
    check_eq("referrers: schemaVersion and mediaType", (2, OCI_INDEX),
             (body.get("schemaVersion"), body.get("mediaType")))
    entries = {m.get("digest"): m for m in body.get("manifests", [])}
    check_eq("referrers: lists exactly the two artifacts", sorted(p[0] for p in pushed.values()),
             sorted(entries))
    for tag, (digest, raw, manifest, art_type) in pushed.items():
        e = entries.get(digest, {})
        check_eq(f"referrers: {tag} entry has artifactType, mediaType, size and annotations",
                 (art_type, OCI_MANIFEST, len(raw), manifest.get("annotations")),
                 (e.get("artifactType"), e.get("mediaType"), e.get("size"), e.get("annotations")))

    r = http(ctx, "GET", path, params={"artifactType": SBOM_TYPE})
    body = r.json() if r.status_code == 200 else {}
    check_eq(f"referrers ?artifactType={SBOM_TYPE}: only the sbom",
             [pushed["sbom"][0]], [m.get("digest") for m in body.get("manifests", [])])
    check_eq("referrers ?artifactType=...: OCI-Filters-Applied header", "artifactType",
             r.headers.get("OCI-Filters-Applied"))

    r = http(ctx, "GET", path, params={"artifactType": "application/vnd.e2e.nothing"})
    body = r.json() if r.status_code == 200 else {}
    check_eq("referrers with a non-matching artifactType: 200 and empty manifests", (200, []),
             (r.status_code, body.get("manifests")))
    check_eq("referrers with a non-matching artifactType: OCI-Filters-Applied header",
             "artifactType", r.headers.get("OCI-Filters-Applied"))

    for what, digest in (("a manifest without referrers (the sbom itself)", pushed["sbom"][0]),
                         ("an unknown digest", digest_of(b"no such manifest"))):
        r = http(ctx, "GET", f"/v2/{repo}/referrers/{digest}")
        body = r.json() if r.status_code == 200 else {}
        check_eq(f"referrers of {what}: 200 and empty manifests", (200, []),
                 (r.status_code, body.get("manifests")))

    # oras pull of the referrer by digest.
    outdir = os.path.join(ctx.work, "pulled", "sbom")
    files = step(f"oras pull {repo}@<sbom digest>", ctx.client.pull,
                 target=f"{ctx.reg}/{repo}@{pushed['sbom'][0]}", outdir=outdir)
    check("oras pull of the sbom referrer: file byte-identical",
          [os.path.basename(f) for f in files] == ["sbom.spdx.json"]
          and read(os.path.join(outdir, "sbom.spdx.json")) == read("sbom.spdx.json"), files)

    # Deleting a referrer (oras deletes the manifest its tag points to) drops it from the list.
    deleted = step(f"oras delete_tags {repo} sig", ctx.client.delete_tags, f"{ctx.reg}/{repo}", "sig")
    check_eq("oras delete_tags: reports sig deleted", ["sig"], deleted)
    r = http(ctx, "GET", f"/v2/{repo}/manifests/{pushed['sig'][0]}", headers={"Accept": OCI_MANIFEST})
    check_eq("after delete: the sig manifest answers 404 by digest", 404, r.status_code)
    r = http(ctx, "GET", path)
    body = r.json() if r.status_code == 200 else {}
    check_eq("after delete: referrers lists only the sbom", [pushed["sbom"][0]],
             [m.get("digest") for m in body.get("manifests", [])])
    tags = ctx.client.get_tags(f"{ctx.reg}/{repo}")
    check("after delete: sig no longer tagged, sbom still is", "sig" not in tags and "sbom" in tags, tags)


def body():
    p = argparse.ArgumentParser()
    p.add_argument("--registry", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--subject-repo", required=True)
    p.add_argument("--subject-ref", required=True)
    a = p.parse_args()
    setup_logger(quiet=True, nocolor=True)

    ctx = Ctx()
    ctx.reg, ctx.work = a.registry, a.work
    ctx.subject_repo, ctx.subject_ref = a.subject_repo, a.subject_ref
    os.chdir(a.work)  # oras-py only pushes files below the working directory
    with open("artifact.txt", "w") as f:
        f.write("hello from oras\n")
    write_random("data.bin", 1 * MiB, 10)
    write_random("big.bin", 13 * MiB, 11)
    with open("sbom.spdx.json", "w") as f:
        json.dump({"spdxVersion": "SPDX-2.3", "name": "marina-e2e"}, f)
    with open("signature.txt", "w") as f:
        f.write("not really a signature\n")
    for tag in ("sbom", "sig"):
        with open(f"config-{tag}.json", "w") as f:
            json.dump({"e2e": tag}, f)
    ctx.client = oras.client.OrasClient(hostname=a.registry, insecure=True)

    group(push_files, ctx)
    group(push_chunked, ctx)
    group(pull_files, ctx)
    group(referrers, ctx)


if __name__ == "__main__":
    main(body)
