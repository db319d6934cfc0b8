#!/usr/bin/env python3
"""Fills a registry for the garbage collection benchmark, then deletes half of it.

    gc_load.py URL IMAGES LAYERS

Pushes IMAGES images into 20 repositories (bench/r0 ... bench/r19), each a config and LAYERS
small layers of its own, tagged t<i>; then deletes every odd image's manifest by digest, so
half the blobs are left unreferenced. Prints the digest of image 0 (kept) and what it did.
Only the standard library; 16 requests in flight.
"""

import hashlib
import json
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def request(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=120) as response:
        response.read()
        return response.status, response.headers


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type, data):
    return {"mediaType": media_type, "digest": digest(data), "size": len(data)}


def push_blob(base, repo, data):
    # Distribution 2.8 does not take POST ?digest= bodies: POST, then PUT the whole blob.
    _, headers = request("POST", f"{base}/v2/{repo}/blobs/uploads/")
    location = headers["Location"]
    if location.startswith("/"):
        location = base + location
    sep = "&" if "?" in location else "?"
    request("PUT", f"{location}{sep}digest={digest(data)}", data,
            {"Content-Type": "application/octet-stream"})


def push_image(base, i, layers):
    repo = f"bench/r{i % 20}"
    config = json.dumps({"os": "linux", "architecture": "amd64", "image": i}).encode()
    blobs = [(f"layer {i}.{n} ".encode() * 64) for n in range(layers)]
    for data in [config, *blobs]:
        push_blob(base, repo, data)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", b) for b in blobs],
    }).encode()
    request("PUT", f"{base}/v2/{repo}/manifests/t{i}", manifest, {"Content-Type": MANIFEST})
    return repo, digest(manifest)


def main():
    base, images, layers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with ThreadPoolExecutor(16) as pool:
        pushed = list(pool.map(lambda i: push_image(base, i, layers), range(images)))
        doomed = [(repo, d) for i, (repo, d) in enumerate(pushed) if i % 2 == 1]
        list(pool.map(lambda rd: request("DELETE", f"{base}/v2/{rd[0]}/manifests/{rd[1]}"), doomed))
    print(f"pushed {images} images ({images * (layers + 1)} blobs) into 20 repositories, "
          f"deleted {len(doomed)} manifests; kept bench/r0:t0 = {pushed[0][1]}")


if __name__ == "__main__":
    main()
