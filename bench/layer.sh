#!/usr/bin/env bash
# Layer export benchmark: rbuild's layer writer (exporter `write_layer`, via the
# `layer_export` example) on a generated ~500 MB tree of mixed file sizes and
# compressibility, against `tar -cf - | gzip`, `tar | pigz` (if installed) and
# `tar | zstd -T0`. Every command writes its blob to the same filesystem and
# fsyncs it (ours commits into a content store: fsync + rename). Prints
# hyperfine's report and a throughput table (uncompressed tar MB / mean time).
# Measures; asserts nothing. Env: SIZE_MB (default 500), RUNS (default 3),
# TREE (reuse an existing directory instead of generating one).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked -q -p rbuild-exporter --example layer_export
ours=$CARGO_TARGET_DIR/release/examples/layer_export
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tree=${TREE:-}
if [ -z "$tree" ]; then
    tree=$work/tree
    python3 bench/gen_tree.py "$tree" "${SIZE_MB:-500}"
fi
runs=${RUNS:-3}
threads=$(nproc)
# Warm the page cache and learn the tar size.
tar_size=$("$ours" "$tree" --compression none --store "$work/store" | sed -n 's/.*tar_size=\([0-9]*\).*/\1/p')
echo "bench/layer: $tree, tar $((tar_size / 1000000)) MB, $threads threads"

cmds=(
    -n "rbuild gzip ($threads threads)" "$ours $tree --store $work/store"
    -n "rbuild gzip (1 thread)" "$ours $tree --store $work/store --threads 1"
    -n "tar | gzip -6" "tar -cf - -C $tree . | gzip -6 > $work/out.tgz && sync $work/out.tgz"
)
if command -v pigz >/dev/null 2>&1; then
    cmds+=(-n "tar | pigz -6 -p $threads" "tar -cf - -C $tree . | pigz -6 -p $threads > $work/out.tgz && sync $work/out.tgz")
else
    echo "(pigz not installed: skipped)"
fi
cmds+=(-n "rbuild zstd -3" "$ours $tree --store $work/store --compression zstd")
if command -v zstd >/dev/null 2>&1; then
    cmds+=(-n "tar | zstd -3 -T0" "tar -cf - -C $tree . | zstd -q -3 -T0 > $work/out.tzst && sync $work/out.tzst")
fi
cmds+=(
    -n "rbuild uncompressed" "$ours $tree --store $work/store --compression none"
    -n "tar -cf" "tar -cf $work/out.tar -C $tree . && sync $work/out.tar"
)

if command -v hyperfine >/dev/null 2>&1; then
    hyperfine --runs "$runs" --warmup 1 --export-json "$work/result.json" "${cmds[@]}"
    python3 - "$work/result.json" "$tar_size" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))["results"]
size = int(sys.argv[2])
print(f"\n{'command':32} {'mean s':>8} {'±':>6} {'user s':>8} {'MB/s':>8}")
for r in res:
    print(f"{r['command']:32} {r['mean']:8.2f} {r['stddev'] or 0:6.2f} {r['user']:8.2f} {size / r['mean'] / 1e6:8.1f}")
PY
else
    for ((i = 0; i < ${#cmds[@]}; i += 3)); do
        echo "${cmds[i+1]}"
        time bash -c "${cmds[i+2]}"
    done
fi
