#!/usr/bin/env bash
# Context hashing benchmark: a deterministic ~1 GB, 100,000-file context, hashed cold (no
# record) and warm (unchanged, record present) by the executor's incremental hasher, with
# `tar -c . | sha256sum` for scale. Uses hyperfine when installed.
#
#   bench/context.sh [FILES] [TOTAL_MB]      (defaults: 100000 1024)
#   BENCH_DIR=/path  where the context and records go (default /tmp/rbuild-bench-context)
set -euo pipefail
cd "$(dirname "$0")/.."
files=${1:-100000}
total_mb=${2:-1024}
dir=${BENCH_DIR:-/tmp/rbuild-bench-context}
ctx="$dir/ctx-$files-$total_mb"
cache="$dir/cache"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target-executor}

if [ ! -f "$ctx/.done" ]; then
    echo "generating $files files, $total_mb MB in $ctx"
    rm -rf "$ctx"
    python3 - "$ctx" "$files" "$total_mb" <<'PY'
import os, random, sys
root, files, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) * 1024 * 1024
rng = random.Random(42)
avg = total // files
pool = rng.randbytes(4 * 1024 * 1024)  # file contents are slices of one seeded pool
for i in range(files):
    d = os.path.join(root, f"d{i % 100:02d}", f"s{(i // 100) % 10}")
    os.makedirs(d, exist_ok=True)
    size = rng.randint(avg // 2, avg * 3 // 2)
    off = rng.randrange(0, len(pool) - size) if size < len(pool) else 0
    header = f"file {i}\n".encode()
    with open(os.path.join(d, f"f{i:06d}.dat"), "wb") as f:
        f.write(header + pool[off:off + max(0, size - len(header))])
PY
    touch "$ctx/.done"
    sleep 3  # past the hasher's 2 s "racily clean" window
fi
echo "context: $(du -sh "$ctx" | cut -f1), $(find "$ctx" -type f | wc -l) files, $(nproc) cores"

cargo build --release -q -p rbuild-executor --example context_hash
bin="$CARGO_TARGET_DIR/release/examples/context_hash"

if command -v hyperfine >/dev/null; then
    hyperfine --warmup 1 --runs 3 \
        --prepare "rm -rf '$cache'" -n cold "$bin '$ctx' '$cache'" \
        -n 'tar -c . | sha256sum' "tar -C '$ctx' -c . | sha256sum"
    "$bin" "$ctx" "$cache" >/dev/null
    hyperfine --warmup 2 --runs 10 -n warm "$bin '$ctx' '$cache'"
else
    rm -rf "$cache"
    echo "cold:"; "$bin" "$ctx" "$cache"
    echo "warm:"; "$bin" "$ctx" "$cache"
    echo "tar | sha256sum:"; time (tar -C "$ctx" -c . | sha256sum)
fi
"$bin" "$ctx" "$cache"

# Docker's context step beside it: BuildKit's `[internal] load build context` (the walk and
# transfer of the context into the builder) as `--progress=plain` reports it, cold (first
# build) and warm (same context again). Needs a running dockerd; Debian's 20.10 client.
docker=/usr/bin/docker
if [ -n "${NO_DOCKER:-}" ] || ! [ -x "$docker" ] || ! "$docker" info >/dev/null 2>&1; then
    echo "docker: skipped (no client or no daemon at $docker; NO_DOCKER set?)"
    exit 0
fi
df_dir=$(mktemp -d /tmp/rbuild-bench-context-df.XXXXXX)
trap 'rm -rf "$df_dir"; "$docker" rmi -f rbuild-bench/context >/dev/null 2>&1 || true' EXIT
printf 'FROM scratch\nCOPY . /ctx\n' >"$df_dir/Dockerfile"
context_step() { # prints the seconds of the context step of one docker build
    DOCKER_BUILDKIT=1 "$docker" build --progress=plain -f "$df_dir/Dockerfile" \
        -t rbuild-bench/context "$ctx" 2>&1 | python3 -c '
import re, sys
step = None
for line in sys.stdin:
    m = re.match(r"#(\d+) \[internal\] load build context", line)
    if m:
        step = m.group(1)
    m = re.match(r"#(\d+) DONE ([0-9.]+)s", line)
    if m and m.group(1) == step:
        print(m.group(2))
        break
'
}
"$docker" builder prune -af >/dev/null 2>&1 || true
echo "docker build context step, cold: $(context_step) s"
for i in 1 2 3; do
    echo "docker build context step, warm run $i: $(context_step) s"
done
