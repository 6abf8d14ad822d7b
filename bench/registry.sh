#!/usr/bin/env bash
# Registry benchmark: push and pull of a ~200 MB image (5 layers of 40 MB of
# deterministic incompressible data, plus busybox when installed) against a local
# `docker-registry` (distribution) on a free loopback port, rbuild vs skopeo:
#   (a) push: `rbuild push` vs `skopeo copy oci:DIR docker://…` (registry storage wiped
#       before every run, so every run uploads every blob);
#   (b) pull: `rbuild pull` into a fresh --root vs `skopeo copy docker://… oci:DIR` into
#       a fresh directory.
# Prints hyperfine's report (or `time` when hyperfine is missing) and rbuild/skopeo
# ratios of the mean times. Measures; asserts nothing. Env: RUNS (default 5),
# LAYERS (default 5), LAYER_MB (default 40), RBUILD (a built binary: skips the build).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in docker-registry skopeo python3 curl; do
    command -v "$tool" >/dev/null 2>&1 || { echo "bench/registry: $tool not installed" >&2; exit 1; }
done
runs=${RUNS:-5}
layers=${LAYERS:-5}
layer_mb=${LAYER_MB:-40}

if [ -n "${RBUILD:-}" ]; then
    rbuild=$RBUILD # a binary already built
else
    cargo build --release --locked -q -p rbuild-cli
    rbuild=${CARGO_TARGET_DIR:-$PWD/target}/release/rbuild
fi
work=$(mktemp -d)
registry_pid=
cleanup() {
    if [ -n "$registry_pid" ]; then
        kill "$registry_pid" 2>/dev/null || true
        wait "$registry_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# The image: an OCI layout, every byte reproducible (seeded generator, fixed mtimes,
# gzip without timestamps).
python3 - "$work/layout" "$layers" "$layer_mb" <<'PY'
import gzip, hashlib, io, json, os, platform, random, sys, tarfile
out, nlayers, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(f"{out}/blobs/sha256")
def put(data):
    d = hashlib.sha256(data).hexdigest()
    with open(f"{out}/blobs/sha256/{d}", "wb") as f:
        f.write(data)
    return "sha256:" + d, len(data)
def layer(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data, mode, link in files:
            ti = tarfile.TarInfo(name)
            ti.mtime, ti.mode = 1_700_000_000, mode
            if link:
                ti.type, ti.linkname = tarfile.SYMTYPE, link
                t.addfile(ti)
            elif data is None:
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    tar = buf.getvalue()
    gz = gzip.compress(tar, compresslevel=1, mtime=0)
    digest, size = put(gz)
    return ({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
             "digest": digest, "size": size},
            "sha256:" + hashlib.sha256(tar).hexdigest())
descs, diff_ids = [], []
if os.path.isfile("/bin/busybox"):
    bb = open("/bin/busybox", "rb").read()
    d, i = layer([("bin", None, 0o755, None), ("bin/busybox", bb, 0o755, None),
                  ("bin/sh", None, 0o777, "busybox")])
    descs.append(d); diff_ids.append(i)
for n in range(nlayers):
    data = random.Random(n + 1).randbytes(mb << 20)
    d, i = layer([("data", None, 0o755, None), (f"data/layer{n}.bin", data, 0o644, None)])
    descs.append(d); diff_ids.append(i)
config = json.dumps({
    "created": "2023-11-14T22:13:20Z", "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine()), "os": "linux",
    "config": {"Cmd": ["sh"]},
    "rootfs": {"type": "layers", "diff_ids": diff_ids},
}).encode()
cd, cs = put(config)
manifest = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
    "layers": descs,
}).encode()
md, ms = put(manifest)
json.dump({"schemaVersion": 2, "manifests": [{
    "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
    "annotations": {"io.containerd.image.name": "docker.io/bench/big:1",
                    "org.opencontainers.image.ref.name": "1"}}]},
    open(f"{out}/index.json", "w"))
open(f"{out}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
echo "bench/registry: image of $(find "$work/layout/blobs" -type f | wc -l) blobs, $(du -sh "$work/layout" | cut -f1)"

# The registry, as the integration tests' harness configures it.
storage=$work/storage
mkdir -p "$storage"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
host=127.0.0.1:$port
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $storage
  delete:
    enabled: true
http:
  addr: $host
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
    curl -fsS "http://$host/v2/" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS "http://$host/v2/" >/dev/null || { cat "$work/registry.log" >&2; exit 1; }
echo "bench/registry: docker-registry on $host"

# rbuild's store with the image, under the name it is pushed as.
push_root=$work/push-root
tar -C "$work/layout" -cf "$work/image.tar" .
"$rbuild" --root "$push_root" load -q -i "$work/image.tar" >/dev/null
"$rbuild" --root "$push_root" tag bench/big:1 "$host/bench/push:1"

# A new run of the registry's storage: distribution creates directories as it writes.
wipe="rm -rf $storage/docker"
rbuild_push="$rbuild --root $push_root push -q $host/bench/push:1"
skopeo_push="skopeo copy -q --dest-tls-verify=false oci:$work/layout docker://$host/bench/push-skopeo:1"
rbuild_pull="$rbuild --root $work/pull-root pull -q $host/bench/big:1"
skopeo_pull="skopeo copy -q --src-tls-verify=false docker://$host/bench/big:1 oci:$work/skopeo-out:1"

ratio() { # mean times of rbuild and skopeo from a hyperfine JSON export
    python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
a, b = r[0]["mean"], r[1]["mean"]
print(f"  rbuild {a:.3f} s, skopeo {b:.3f} s: rbuild/skopeo = {a / b:.2f}")
PY
}

if command -v hyperfine >/dev/null 2>&1; then
    echo "== (a) push"
    hyperfine -N --runs "$runs" --warmup 1 --export-json "$work/push.json" \
        --prepare "$wipe" -n "rbuild push" "$rbuild_push" \
        --prepare "$wipe" -n "skopeo copy (push)" "$skopeo_push"
    # The pulls' source.
    skopeo copy -q --dest-tls-verify=false "oci:$work/layout" "docker://$host/bench/big:1"
    echo "== (b) pull"
    hyperfine -N --runs "$runs" --warmup 1 --export-json "$work/pull.json" \
        --prepare "rm -rf $work/pull-root" -n "rbuild pull" "$rbuild_pull" \
        --prepare "rm -rf $work/skopeo-out" -n "skopeo copy (pull)" "$skopeo_pull"
    echo "== summary (mean wall time)"
    echo "push:"; ratio "$work/push.json"
    echo "pull:"; ratio "$work/pull.json"
else
    timed() { # prepare, command: prints seconds of the command
        sh -c "$1"
        local t0 t1
        t0=$(date +%s.%N)
        sh -c "$2" >/dev/null
        t1=$(date +%s.%N)
        python3 -c "print(f'{$t1 - $t0:.3f}')"
    }
    rp=$(timed "$wipe" "$rbuild_push")
    sp=$(timed "$wipe" "$skopeo_push")
    skopeo copy -q --dest-tls-verify=false "oci:$work/layout" "docker://$host/bench/big:1"
    rl=$(timed "rm -rf $work/pull-root" "$rbuild_pull")
    sl=$(timed "rm -rf $work/skopeo-out" "$skopeo_pull")
    echo "push: rbuild $rp s, skopeo $sp s: rbuild/skopeo = $(python3 -c "print(f'{$rp / $sp:.2f}')")"
    echo "pull: rbuild $rl s, skopeo $sl s: rbuild/skopeo = $(python3 -c "print(f'{$rl / $sl:.2f}')")"
fi
