#!/usr/bin/env python3
"""Writes the root filesystem of a stand-in for gcr.io/distroless/base-nossl-debian12 as a tar.

    runtime_standin.py DEBIAN_ROOT OUT.tar

DEBIAN_ROOT is a Debian 12 root filesystem (debootstrap). The tar holds what distroless
base-nossl holds, taken from the same Debian packages: glibc (libc6) and tzdata (their files,
without documentation), the CA bundle, os-release, and distroless' users (root, nobody,
nonroot = 65532) with their home folders, /tmp and an nsswitch.conf. No shell, no package
manager, and no libgcc_s: the Containerfile brings that one. tests/container/run.sh imports the
tar with `podman import`, so the Containerfile's runtime stage can be built without pulling.
Left out: netbase's /etc/services and friends (not in a minbase debootstrap; marina reads none).
"""

import io
import os
import sys
import tarfile

PACKAGES = ["libc6", "tzdata"]
SKIPPED = ("usr/share/doc/", "usr/share/man/", "usr/share/info/", "usr/share/lintian/",
           "usr/share/bug/")
# Merged /usr, as in Debian 12 and distroless.
USRMERGE = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}

PASSWD = """root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
"""
GROUP = """root:x:0:
tty:x:5:
staff:x:50:
nogroup:x:65534:
nonroot:x:65532:
"""
NSSWITCH = """passwd: files
group: files
shadow: files
hosts: files dns
networks: files
protocols: files
services: files
ethers: files
rpc: files
"""


def package_list(root, package):
    for name in (f"{package}:amd64", f"{package}:arm64", package):
        path = os.path.join(root, "var/lib/dpkg/info", name + ".list")
        if os.path.exists(path):
            with open(path) as f:
                return [line.strip() for line in f if line.strip() not in ("", "/.")]
    sys.exit(f"runtime_standin.py: package {package} is not installed in {root}")


def canonical(root, path):
    """The path inside root with its folders' links resolved (lib/x -> usr/lib/x)."""
    parent, leaf = os.path.split(path.lstrip("/"))
    real_parent = os.path.realpath(os.path.join(root, parent))
    if real_parent != root and not real_parent.startswith(root + os.sep):
        sys.exit(f"runtime_standin.py: {path} leads out of {root}")
    return os.path.relpath(os.path.join(real_parent, leaf), root)


def entry(name, kind=tarfile.DIRTYPE, mode=0o755, uid=0, data=None, link=None):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, uid, 0
    if link is not None:
        info.linkname = link
    if data is not None:
        info.size = len(data)
        return info, io.BytesIO(data)
    return info, None


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    root, out = os.path.realpath(sys.argv[1]), sys.argv[2]
    paths = set()
    for package in PACKAGES:
        for path in package_list(root, package):
            rel = canonical(root, path)
            if rel != "." and not rel.startswith(SKIPPED) and os.path.lexists(os.path.join(root, rel)):
                paths.add(rel)
    # Parent folders first, so each is created with its own mode.
    for rel in list(paths):
        parent = os.path.dirname(rel)
        while parent:
            paths.add(parent)
            parent = os.path.dirname(parent)
    paths.update(["etc/ssl/certs/ca-certificates.crt", "usr/lib/os-release", "etc/os-release"])
    paths.update(["etc", "etc/ssl", "etc/ssl/certs", "usr", "usr/lib"])

    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        def add(info, data=None):
            tar.addfile(info, data)

        for link, target in USRMERGE.items():
            add(*entry(link, tarfile.SYMTYPE, 0o777, link=target))
        for rel in sorted(paths):
            if rel in USRMERGE:
                continue
            info = tar.gettarinfo(os.path.join(root, rel), arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if info.isreg():
                with open(os.path.join(root, rel), "rb") as f:
                    add(info, f)
            else:
                add(info)
        for name, mode, uid in [("root", 0o700, 0), ("home", 0o755, 0),
                                ("home/nonroot", 0o700, 65532), ("tmp", 0o1777, 0),
                                ("var", 0o755, 0), ("var/tmp", 0o1777, 0),
                                ("proc", 0o555, 0), ("sys", 0o555, 0), ("dev", 0o755, 0)]:
            add(*entry(name, mode=mode, uid=uid))
        for name, text in [("etc/passwd", PASSWD), ("etc/group", GROUP),
                           ("etc/nsswitch.conf", NSSWITCH)]:
            add(*entry(name, tarfile.REGTYPE, 0o644, data=text.encode()))


if __name__ == "__main__":
    main()
