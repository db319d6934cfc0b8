#!/usr/bin/env python3
"""Offline input builders for tests/clients/run.sh (standard library only).

  make_image.py random-file PATH SIZE SEED
      Writes SIZE deterministic pseudo-random bytes (incompressible, reproducible from SEED).

  make_image.py index LAYOUT NEW_REF REF...
      In the OCI image layout LAYOUT, writes an image index whose entries are the manifests
      tagged REF... (each with the platform read from its config), stores it as a blob and tags
      it NEW_REF in index.json. Prints the index digest.
"""

import hashlib
import json
import os
import random
import sys

REF_NAME = "org.opencontainers.image.ref.name"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"


def random_file(path, size, seed):
    rng = random.Random(int(seed))
    with open(path, "wb") as f:
        left = int(size)
        while left:
            n = min(left, 1 << 20)
            f.write(rng.randbytes(n))
            left -= n


def blob_path(layout, digest):
    algo, hexpart = digest.split(":", 1)
    return os.path.join(layout, "blobs", algo, hexpart)


def read_json_blob(layout, digest):
    with open(blob_path(layout, digest), "rb") as f:
        return json.load(f)


def make_index(layout, new_ref, refs):
    index_path = os.path.join(layout, "index.json")
    with open(index_path) as f:
        top = json.load(f)
    by_ref = {m.get("annotations", {}).get(REF_NAME): m for m in top["manifests"]}
    entries = []
    for ref in refs:
        desc = by_ref[ref]
        manifest = read_json_blob(layout, desc["digest"])
        config = read_json_blob(layout, manifest["config"]["digest"])
        platform = {"architecture": config["architecture"], "os": config["os"]}
        if config.get("variant"):
            platform["variant"] = config["variant"]
        entries.append({
            "mediaType": desc["mediaType"],
            "digest": desc["digest"],
            "size": desc["size"],
            "platform": platform,
        })
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": entries,
        "annotations": {"org.opencontainers.image.description": "marina e2e multi-platform index"},
    }
    data = json.dumps(index, indent=2, sort_keys=True).encode() + b"\n"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with open(blob_path(layout, digest), "wb") as f:
        f.write(data)
    top["manifests"] = [m for m in top["manifests"]
                        if m.get("annotations", {}).get(REF_NAME) != new_ref]
    top["manifests"].append({
        "mediaType": INDEX_TYPE,
        "digest": digest,
        "size": len(data),
        "annotations": {REF_NAME: new_ref},
    })
    with open(index_path, "w") as f:
        json.dump(top, f)
    print(digest)


def main(argv):
    if len(argv) == 5 and argv[1] == "random-file":
        random_file(argv[2], argv[3], argv[4])
    elif len(argv) >= 5 and argv[1] == "index":
        make_index(argv[2], argv[3], argv[4:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
