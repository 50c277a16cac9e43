#!/usr/bin/env python3
"""CycloneDX 1.5 SBOMs of a release (scripts/release.sh; docs/releasing.md).

  release-sbom.py crates TARGET BINARY VERSION COMMIT CREATED > crates.cdx.json
      The crates compiled into BINARY for TARGET: exactly the packages of
      `cargo tree --target TARGET -e normal` (cargo's own resolver, so features that only the
      dev-dependencies turn on add nothing), each with Cargo.lock's checksum and the licence,
      description and repository of `cargo metadata`, and the dependency edges.
      (cargo-cyclonedx reads `cargo metadata`, whose one feature set mixes in the dev-dependencies:
      for this crate it listed three crates that are not compiled in and missed two that are.)

  release-sbom.py image INDEX_DIGEST IMAGE_REPO VERSION COMMIT CREATED CA_FILE CA_VERSION \\
      ARCH=MANIFEST_DIGEST=BINARY=CRATES_SBOM ... > image.cdx.json
      The image index: per platform, its manifest digest and the two files the image holds,
      /usr/local/bin/wasm-admission (its crates nested from CRATES_SBOM) and Debian's CA bundle.

Run from the crate's folder. Only the standard library: the release needs nothing more.
"""
import hashlib
import json
import subprocess
import sys
import tomllib
import uuid
from datetime import datetime, timezone

NAMESPACE = uuid.UUID("6f1f7c3e-6a0d-4b9e-9a53-7a1d9f5c2b10")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def timestamp(created):
    return datetime.fromtimestamp(int(created), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def header(serial_of, created, component):
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        # The same inputs give the same document.
        "serialNumber": f"urn:uuid:{uuid.uuid5(NAMESPACE, serial_of)}",
        "version": 1,
        "metadata": {
            "timestamp": timestamp(created),
            "tools": {"components": [{"type": "application", "name": "scripts/release-sbom.py"}]},
            "component": component,
        },
    }


def cargo(*args):
    return subprocess.run(["cargo", *args], check=True, capture_output=True, text=True).stdout


def crates(target, binary, version, commit, created):
    # Depth-prefixed lines: "0wasm-admission v0.1.0 (/path)", "1arc-swap v1.7.1", ...
    tree = cargo("tree", "--locked", "--quiet", "--target", target, "-e", "normal",
                 "--prefix", "depth", "-f", "{p}", "-p", "wasm-admission")
    edges, stack = {}, []
    for line in tree.splitlines():
        digits = len(line) - len(line.lstrip("0123456789"))
        depth, fields = int(line[:digits]), line[digits:].split()
        key = (fields[0], fields[1].lstrip("v"))
        del stack[depth:]
        if stack:
            edges.setdefault(stack[-1], set()).add(key)
        edges.setdefault(key, set())
        stack.append(key)
    root = ("wasm-admission", version)
    if root not in edges:
        sys.exit(f"cargo tree does not start at wasm-admission {version}")

    lock = {(p["name"], p["version"]): p for p in tomllib.load(open("Cargo.lock", "rb"))["package"]}
    meta = json.loads(cargo("metadata", "--locked", "--format-version", "1", "--filter-platform", target))
    info = {(p["name"], p["version"]): p for p in meta["packages"]}

    def ref(key):
        return f"pkg:cargo/{key[0]}@{key[1]}"

    components = []
    for key in sorted(k for k in edges if k != root):
        if key not in lock:
            sys.exit(f"{key[0]} {key[1]} is compiled in but not in Cargo.lock")
        p = info.get(key, {})
        c = {"type": "library", "bom-ref": ref(key), "name": key[0], "version": key[1],
             "scope": "required", "purl": ref(key)}
        if lock[key].get("checksum"):
            c["hashes"] = [{"alg": "SHA-256", "content": lock[key]["checksum"]}]
        if p.get("license"):
            c["licenses"] = [{"expression": p["license"]}]
        if p.get("description"):
            c["description"] = " ".join(p["description"].split())
        if p.get("repository"):
            c["externalReferences"] = [{"type": "vcs", "url": p["repository"]}]
        components.append(c)

    doc = header(f"{commit}/{target}", created, {
        "type": "application", "bom-ref": ref(root), "name": "wasm-admission", "version": version,
        "purl": ref(root), "licenses": [{"expression": "Apache-2.0"}],
        "hashes": [{"alg": "SHA-256", "content": sha256(binary)}],
        "properties": [{"name": "cargo:target", "value": target},
                       {"name": "git:commit", "value": commit}],
    })
    doc["components"] = components
    doc["dependencies"] = [{"ref": ref(k), "dependsOn": sorted(ref(d) for d in v)}
                           for k, v in sorted(edges.items())]
    return doc


def image(index, repo, version, commit, created, ca_file, ca_version, platforms):
    ca_sha = sha256(ca_file)
    purl = f"pkg:oci/wasm-admission@{index.replace(':', '%3A')}?repository_url={repo}"
    doc = header(index, created, {
        "type": "container", "bom-ref": "image", "name": repo, "version": version, "purl": purl,
        "hashes": [{"alg": "SHA-256", "content": index.removeprefix("sha256:")}],
        "properties": [{"name": "org.opencontainers.image.revision", "value": commit}],
    })
    doc["components"] = []
    for spec in platforms:
        arch, manifest, binary, crates_sbom = spec.split("=", 3)
        crates_doc = json.load(open(crates_sbom))
        nested = [dict(c, **{"bom-ref": f"{arch}/{c['bom-ref']}"}) for c in crates_doc["components"]]
        doc["components"].append({
            "type": "container", "bom-ref": f"linux/{arch}", "name": f"linux/{arch}", "version": version,
            "hashes": [{"alg": "SHA-256", "content": manifest.removeprefix("sha256:")}],
            "components": [
                {"type": "application", "bom-ref": f"{arch}/wasm-admission", "name": "wasm-admission",
                 "version": version, "description": "/usr/local/bin/wasm-admission",
                 "hashes": [{"alg": "SHA-256", "content": sha256(binary)}],
                 "properties": crates_doc["metadata"]["component"]["properties"],
                 "components": nested},
                {"type": "data", "bom-ref": f"{arch}/ca-certificates", "name": "ca-certificates",
                 "version": ca_version,
                 "description": "/etc/ssl/certs/ca-certificates.crt, from Debian's ca-certificates package",
                 "purl": f"pkg:deb/debian/ca-certificates@{ca_version}",
                 "hashes": [{"alg": "SHA-256", "content": ca_sha}]},
            ],
        })
    return doc


def main(argv):
    if len(argv) == 6 and argv[0] == "crates":
        doc = crates(*argv[1:])
    elif len(argv) >= 9 and argv[0] == "image":
        doc = image(*argv[1:8], argv[8:])
    else:
        sys.exit(__doc__)
    json.dump(doc, sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
