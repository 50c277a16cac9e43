#!/usr/bin/env python3
"""Builds one single-file OCI image and pushes it to a registry over plain HTTP (the Docker
Registry HTTP API v2 that docker-registry serves), the way a registry client does: blobs first,
then the manifest. Used by scripts/cluster.sh for the end-to-end node's images.

  push-image.py REGISTRY REPO:TAG LAYOUT FILE [--annotation KEY=VALUE]...

LAYOUT is one of
  container  an ordinary linux/amd64 image: one tar+gzip layer holding FILE as /FILE's name,
             its entrypoint
  compat     the same shape with a .wasm entrypoint, FROM scratch (WasmEdge's and crun's
             `compat` convention)
  artifact   the OCI Wasm artifact: config application/vnd.wasm.config.v0+json (with an
             entrypoint naming the module, which containerd's CRI requires), one layer of media
             type application/wasm holding the module's bytes
Prints the manifest's digest.
"""

import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
import urllib.request

TIMEOUT = 30


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def request(method, url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        body = err.read().decode(errors="replace")[:500]
        sys.exit(f"push-image.py: {method} {url} answered {err.code}: {body}")
    except OSError as err:
        sys.exit(f"push-image.py: {method} {url} failed ({err}); is the registry running?")


def push_blob(registry, repo, data):
    d = digest(data)
    url = f"http://{registry}/v2/{repo}/blobs/uploads/"
    _, headers, _ = request("POST", url, b"", {"Content-Length": "0"})
    location = headers["Location"]
    if location.startswith("/"):
        location = f"http://{registry}{location}"
    sep = "&" if "?" in location else "?"
    request("PUT", f"{location}{sep}digest={d}", data,
            {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))})
    return {"digest": d, "size": len(data)}


def tar_layer(path, name):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = os.path.getsize(path)
        info.mode = 0o755
        info.mtime = 0
        with open(path, "rb") as f:
            tar.addfile(info, f)
    uncompressed = raw.getvalue()
    return gzip.compress(uncompressed, mtime=0), digest(uncompressed)


def main():
    args = sys.argv[1:]
    annotations = {}
    while "--annotation" in args:
        i = args.index("--annotation")
        key, _, value = args[i + 1].partition("=")
        annotations[key] = value
        del args[i:i + 2]
    if len(args) != 4 or args[2] not in ("container", "compat", "artifact"):
        sys.exit(__doc__)
    registry, ref, layout, path = args
    repo, _, tag = ref.rpartition(":")
    if not repo:
        sys.exit(f"push-image.py: {ref} has no tag (REPO:TAG)")
    name = os.path.basename(path)
    if layout == "artifact":
        with open(path, "rb") as f:
            module = f.read()
        layer = push_blob(registry, repo, module)
        layer["mediaType"] = "application/wasm"
        # The Wasm config's fields, plus the entrypoint containerd's CRI needs to build a container
        # (it reads every config as an OCI image config; without one: "no command specified").
        config = json.dumps({"created": "1970-01-01T00:00:00Z", "architecture": "wasm", "os": "wasip1",
                             "layerDigests": [layer["digest"]],
                             "config": {"Entrypoint": [f"/{name}"]},
                             "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        config_desc = push_blob(registry, repo, config)
        config_desc["mediaType"] = "application/vnd.wasm.config.v0+json"
    else:
        blob, diff_id = tar_layer(path, name)
        layer = push_blob(registry, repo, blob)
        layer["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
        config = json.dumps({
            "created": "1970-01-01T00:00:00Z", "architecture": "amd64", "os": "linux",
            "config": {"Entrypoint": [f"/{name}"], "Env": ["PATH=/"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }).encode()
        config_desc = push_blob(registry, repo, config)
        config_desc["mediaType"] = "application/vnd.oci.image.config.v1+json"
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config_desc, "layers": [layer]}
    if annotations:
        manifest["annotations"] = annotations
    body = json.dumps(manifest).encode()
    request("PUT", f"http://{registry}/v2/{repo}/manifests/{tag}", body,
            {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    print(digest(body))


if __name__ == "__main__":
    main()
