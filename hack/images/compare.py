#!/usr/bin/env python3
"""Compares a daemonless image tarball with the Dockerfile it stands in for.

    compare.py DOCKERFILE IMAGE.tar BINARY

The real node cannot run `docker build`, so hack/images/build.sh assembles the
app and operator images with crane. This checks that what it produced is what
the Dockerfile's final stage describes: the same USER, ENTRYPOINT, EXPOSEd
ports and LABEL keys in the image config, the binary at the COPY destination
(byte for byte the release binary, mode 0555, owned by root), every shared
library the binary loads present in the image, /tmp world-writable, and the
user known to /etc/passwd. Exits non-zero listing every difference.
"""

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile


def final_stage(dockerfile):
    """Instructions of the last stage, continuation lines joined."""
    text = open(dockerfile).read()
    text = re.sub(r"\\\n", " ", text)
    stages, cur = [], None
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        word, _, rest = s.partition(" ")
        if word.upper() == "FROM":
            cur = []
            stages.append(cur)
        if cur is not None:
            cur.append((word.upper(), rest.strip()))
    return stages[-1]


def expected(dockerfile):
    inst = final_stage(dockerfile)
    get = lambda k: [v for w, v in inst if w == k]
    user = get("USER")[-1]
    entry = json.loads(get("ENTRYPOINT")[-1])
    ports = set()
    for v in get("EXPOSE"):
        for p in v.split():
            ports.add(p if "/" in p else p + "/tcp")
    labels = set()
    for v in get("LABEL"):
        for tok in shlex.split(v):
            labels.add(tok.split("=", 1)[0])
    copy = get("COPY")[-1].split()
    dest = copy[-1]
    return {"user": user, "entrypoint": entry, "ports": ports, "labels": labels, "dest": dest}


def image(tar_path):
    """(config, {path: (mode, uid, sha256 or None, linkname)}) of a docker-archive tarball."""
    files = {}
    with tarfile.open(tar_path) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))[0]
        config = json.load(outer.extractfile(manifest["Config"]))
        for layer in manifest["Layers"]:
            with tarfile.open(fileobj=outer.extractfile(layer)) as inner:
                for m in inner.getmembers():
                    path = "/" + os.path.normpath(m.name).lstrip("./")
                    digest = None
                    if m.isfile():
                        data = inner.extractfile(m).read()
                        digest = hashlib.sha256(data).hexdigest()
                        if path == "/etc/passwd":
                            files["passwd-text"] = (0, 0, data.decode(), None)
                    files[path] = (m.mode, m.uid, digest, m.linkname if m.issym() else None)
    return config, files


def resolve(files, path, depth=0):
    """Follows symlinks inside the image (absolute or relative)."""
    if depth > 20 or path not in files:
        # a symlinked parent folder (/lib -> usr/lib in a merged /usr)
        parts = path.split("/")
        for i in range(len(parts) - 1, 1, -1):
            parent = "/".join(parts[:i])
            if parent in files and files[parent][3]:
                link = files[parent][3]
                base = link if link.startswith("/") else os.path.join(os.path.dirname(parent), link)
                return resolve(files, os.path.normpath(base + "/" + "/".join(parts[i:])), depth + 1)
        return None
    link = files[path][3]
    if link is None:
        return path
    target = link if link.startswith("/") else os.path.join(os.path.dirname(path), link)
    return resolve(files, os.path.normpath(target), depth + 1)


def main():
    dockerfile, tar_path, binary = sys.argv[1:4]
    want = expected(dockerfile)
    config, files = image(tar_path)
    cfg = config.get("config", {})
    errors = []

    if cfg.get("User") != want["user"]:
        errors.append(f"USER: Dockerfile {want['user']!r}, image {cfg.get('User')!r}")
    if cfg.get("Entrypoint") != want["entrypoint"]:
        errors.append(f"ENTRYPOINT: Dockerfile {want['entrypoint']}, image {cfg.get('Entrypoint')}")
    if cfg.get("Cmd"):
        errors.append(f"CMD: the Dockerfile sets none, the image has {cfg.get('Cmd')}")
    got_ports = set((cfg.get("ExposedPorts") or {}).keys())
    if got_ports != want["ports"]:
        errors.append(f"EXPOSE: Dockerfile {sorted(want['ports'])}, image {sorted(got_ports)}")
    missing_labels = want["labels"] - set((cfg.get("Labels") or {}).keys())
    if missing_labels:
        errors.append(f"LABEL: missing in the image: {sorted(missing_labels)}")

    dest = want["dest"]
    if dest not in files:
        errors.append(f"COPY: no {dest} in the image")
    else:
        mode, uid, digest, _ = files[dest]
        sha = hashlib.sha256(open(binary, "rb").read()).hexdigest()
        if digest != sha:
            errors.append(f"{dest} is not the release binary {binary}")
        if mode & 0o7777 != 0o555 or uid != 0:
            errors.append(f"{dest}: mode {oct(mode & 0o7777)} uid {uid}, Dockerfile installs 0555 root")

    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    for line in ldd.splitlines():
        m = re.search(r"(/\S+) \(0x", line)
        if not m:
            continue
        lib = m.group(1)
        # the library as the loader looks it up: its path, or its name in /lib or /usr/lib
        name = os.path.basename(lib)
        cands = [lib, f"/lib/x86_64-linux-gnu/{name}", f"/usr/lib/x86_64-linux-gnu/{name}", f"/lib64/{name}"]
        if not any(resolve(files, c) for c in cands):
            errors.append(f"shared library {lib} (ldd {binary}) is not in the image")

    uid = want["user"].split(":")[0]
    passwd = files.get("passwd-text", (0, 0, "", None))[2]
    if not any(line.split(":")[2:3] == [uid] for line in passwd.splitlines()):
        errors.append(f"user {uid} is not in the image's /etc/passwd")
    tmp = files.get("/tmp")
    if not tmp or tmp[0] & 0o1777 != 0o1777:
        errors.append("/tmp is missing or not world-writable with the sticky bit")

    name = os.path.basename(tar_path)
    if errors:
        print(f"{name} differs from {os.path.basename(dockerfile)}:")
        for e in errors:
            print("  - " + e)
        sys.exit(1)
    print(f"{name} matches {os.path.basename(dockerfile)}: USER {want['user']}, ENTRYPOINT {want['entrypoint']}, "
          f"EXPOSE {' '.join(sorted(want['ports']))}, {len(want['labels'])} labels, {dest} (0555, the release binary), "
          f"its shared libraries, /tmp, user {uid}")


if __name__ == "__main__":
    main()
