#!/usr/bin/env bash
# Build benchmark: `rbuild build` beside `docker build` with BuildKit (Debian's 20.10
# client, DOCKER_BUILDKIT=1) and `buildah bud --layers`, on the same Dockerfiles
# (bench/build/*.Dockerfile), all offline: the base is the busybox image made by
# scripts/busybox-image, given to Docker with `docker load` and to buildah with
# `buildah pull docker-archive:`. Scenarios:
#   1. cold     app.Dockerfile, nothing cached (a fresh rbuild root each run; for docker
#               `builder prune -af` + rmi; for buildah `rmi -a` in its private store)
#   2. warm     the same, no change
#   3. change   the same, one source file rewritten with new content before each run
#   4. 1 GB     big.Dockerfile (`COPY . /ctx`) on 10,000 files of ~100 KB: built once
#               (one run, timed), then a no-change rebuild and a one-file change
#   5. per RUN  runs.Dockerfile (20 × `RUN true`), cold, divided by 20
# Prints hyperfine's reports (or `time`-style means when hyperfine is missing) and a
# table of mean times with each peer's time over rbuild's. Measures; asserts nothing.
# Run as root. Docker is skipped when `/usr/bin/docker info` fails, buildah when it is
# not installed. Note: docker's cold runs run `docker builder prune -af`, which empties
# the daemon's whole build cache.
# Env: RUNS (default 3), WARMUP (default 1), BIG_FILES (default 10000), BIG_MB
# (default 1024), RBUILD (a built binary: skips the build), NO_DOCKER=1, NO_BUILDAH=1.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
runs=${RUNS:-3}
warmup=${WARMUP:-1}
big_files=${BIG_FILES:-10000}
big_mb=${BIG_MB:-1024}
command -v python3 >/dev/null 2>&1 || { echo "bench/build: python3 not installed" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "bench/build: /bin/busybox missing (apt-get install busybox-static)" >&2; exit 1; }

if [ -n "${RBUILD:-}" ]; then
    rbuild=$RBUILD # a binary already built
else
    cargo build --release --locked -q -p rbuild-cli
    rbuild=${CARGO_TARGET_DIR:-$PWD/target}/release/rbuild
fi
docker=/usr/bin/docker
use_docker=1 use_buildah=1
notes=()
if [ -n "${NO_DOCKER:-}" ]; then
    use_docker=0; notes+=("docker: skipped (NO_DOCKER)")
elif ! [ -x "$docker" ] || ! "$docker" info >/dev/null 2>&1; then
    use_docker=0; notes+=("docker: skipped ($docker info failed: no client or no daemon)")
fi
if [ -n "${NO_BUILDAH:-}" ]; then
    use_buildah=0; notes+=("buildah: skipped (NO_BUILDAH)")
elif ! command -v buildah >/dev/null 2>&1; then
    use_buildah=0; notes+=("buildah: skipped (not installed; apt-get install buildah)")
fi
for n in "${notes[@]}"; do echo "bench/build: $n"; done

work=$(mktemp -d /tmp/rbuild-bench-build.XXXXXX)
base=rbuild-bench/busybox:latest
docker_loaded=0
cleanup() {
    set +e
    if [ "$use_docker" = 1 ]; then
        # every image built here, the untagged earlier runs' too (they carry the label)
        "$docker" rmi -f $("$docker" images -aq --filter label=rbuild-bench=1 | sort -u) >/dev/null 2>&1
        [ "$docker_loaded" = 1 ] && "$docker" rmi -f "$base" >/dev/null 2>&1
        "$docker" builder prune -af >/dev/null 2>&1
    fi
    if [ "$use_buildah" = 1 ] && [ -d "$work/buildah" ]; then
        buildah --root "$work/buildah/root" --runroot "$work/buildah/run" rmi -a -f >/dev/null 2>&1
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The base: scripts/busybox-image into a scratch root, renamed so that it cannot clash with
# another `busybox:latest` in Docker's store, saved once for every fresh root.
RBUILD_ROOT=$work/base-root scripts/busybox-image "$rbuild" >/dev/null
"$rbuild" --root "$work/base-root" tag busybox:latest "$base"
"$rbuild" --root "$work/base-root" save -o "$work/base.tar" "$base"
if [ "$use_docker" = 1 ]; then
    "$docker" image inspect "$base" >/dev/null 2>&1 || docker_loaded=1
    "$docker" load -q -i "$work/base.tar" >/dev/null
fi
buildah_cmd="buildah --root $work/buildah/root --runroot $work/buildah/run"
if [ "$use_buildah" = 1 ]; then
    mkdir -p "$work/buildah"
    $buildah_cmd pull -q "docker-archive:$work/base.tar" >/dev/null
fi

# The contexts. app: a dependency list and 100 small sources; big: BIG_FILES files of
# ~BIG_MB/BIG_FILES each, slices of one seeded pool (deterministic, incompressible).
python3 - "$work/app" "$work/big" "$big_files" "$big_mb" <<'PY'
import os, random, sys
app, big, files, total = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) << 20
rng = random.Random(7)
os.makedirs(f"{app}/src")
with open(f"{app}/deps.txt", "w") as f:
    f.writelines(f"lib{i}=={i}.0.{i % 7}\n" for i in range(50))
for i in range(100):
    with open(f"{app}/src/mod{i:03d}.txt", "w") as f:
        f.writelines(f"fn f{i}_{j}() {{ return {rng.randrange(1 << 30)}; }}\n" for j in range(100))
avg = total // files
pool = rng.randbytes(4 << 20)
for i in range(files):
    d = os.path.join(big, f"d{i % 100:02d}")
    os.makedirs(d, exist_ok=True)
    size = rng.randint(avg // 2, avg * 3 // 2)
    off = rng.randrange(0, len(pool) - size) if size < len(pool) else 0
    header = f"file {i}\n".encode()
    with open(os.path.join(d, f"f{i:06d}.dat"), "wb") as f:
        f.write(header + pool[off:off + max(0, size - len(header))])
PY
sleep 3 # past rbuild's 2 s "racily clean" window: the warm runs hash nothing
echo "bench/build: app context $(du -sh "$work/app" | cut -f1), big context $(du -sh "$work/big" | cut -f1) in $(find "$work/big" -type f | wc -l) files; $(nproc) cores; rbuild $rbuild"

# A build command per tool: build TOOL NAME (rbuild's root is $work/rb-NAME).
build() {
    local df=$repo/bench/build/$2.Dockerfile ctx=$work/$2
    case $1 in
        rbuild) echo "$rbuild --root $work/rb-$2 build -q --build-arg BASE=$base --label rbuild-bench=1 -t rbuild-bench-$2 -f $df $ctx" ;;
        docker) echo "DOCKER_BUILDKIT=1 $docker build -q --build-arg BASE=$base --label rbuild-bench=1 -t rbuild-bench-$2 -f $df $ctx" ;;
        buildah) echo "$buildah_cmd bud --layers -q --build-arg BASE=$base --label rbuild-bench=1 -t rbuild-bench-$2 -f $df $ctx" ;;
    esac
}
mkdir -p "$work/runs" # runs.Dockerfile needs no context
# What makes TOOL cold for NAME.
cold() {
    case $1 in
        rbuild) echo "rm -rf $work/rb-$2 && $rbuild --root $work/rb-$2 load -q -i $work/base.tar >/dev/null" ;;
        docker) echo "$docker builder prune -af >/dev/null 2>&1; $docker rmi -f rbuild-bench-$2 >/dev/null 2>&1; true" ;;
        buildah) echo "$buildah_cmd rmi -a -f >/dev/null 2>&1; $buildah_cmd pull -q docker-archive:$work/base.tar >/dev/null" ;;
    esac
}
tools=(rbuild)
[ "$use_docker" = 1 ] && tools+=(docker)
[ "$use_buildah" = 1 ] && tools+=(buildah)

# measure SCENARIO RUNS WARMUP PREPARE-KIND NAME: every tool through hyperfine (or a
# loop of `date`s), means into $work/SCENARIO.json. PREPARE-KIND: cold, change, none.
measure() {
    local scenario=$1 n=$2 w=$3 kind=$4 name=$5 args=() t cmd prep
    echo
    echo "== $scenario"
    for t in "${tools[@]}"; do
        cmd=$(build "$t" "$name")
        case $kind in
            cold) prep=$(cold "$t" "$name") ;;
            change) prep="echo \"// changed \$(date +%s%N)\" > $work/$name/$changed" ;;
            none) prep=true ;;
        esac
        args+=(--prepare "$prep" -n "$t" "$cmd")
    done
    if command -v hyperfine >/dev/null 2>&1; then
        if ! hyperfine --runs "$n" --warmup "$w" --export-json "$work/$scenario.json" "${args[@]}"; then
            echo "bench/build: $scenario failed; each command once, with its output:"
            for t in "${tools[@]}"; do
                echo "\$ $(build "$t" "$name")"
                sh -c "$(build "$t" "$name")" || echo "(exit $?)"
            done
            rm -f "$work/$scenario.json"
        fi
    else
        local i k=0 t0 t1 times json='{"results": ['
        while [ $k -lt ${#args[@]} ]; do
            prep=${args[k+1]} t=${args[k+3]} cmd=${args[k+4]}
            k=$((k + 5))
            times=()
            for ((i = 0; i < w + n; i++)); do
                sh -c "$prep"
                t0=$(date +%s.%N)
                sh -c "$cmd" >/dev/null || { echo "bench/build: $scenario: $t failed: $cmd"; continue 2; }
                t1=$(date +%s.%N)
                [ $i -ge "$w" ] && times+=("$(python3 -c "print($t1 - $t0)")")
            done
            local mean
            mean=$(python3 -c "import sys; v=[float(x) for x in sys.argv[1:]]; print(sum(v)/len(v))" "${times[@]}")
            echo "  $t: mean $mean s over $n runs"
            json+="{\"command\": \"$t\", \"mean\": $mean},"
        done
        echo "${json%,}]}" >"$work/$scenario.json"
    fi
}

changed=src/mod050.txt
measure cold "$runs" "$warmup" cold app
measure warm "$runs" "$warmup" none app
measure change "$runs" "$warmup" change app
sh -c "$(cold rbuild big)" # the base in rbuild's root for the 1 GB context
measure big-first 1 0 none big
measure big-warm "$runs" "$warmup" none big
changed=d42/f004242.dat
measure big-change "$runs" "$warmup" change big
measure runs-cold "$runs" "$warmup" cold runs

echo
echo "== summary: mean wall time; peer/rbuild > 1 means rbuild is faster ($(nproc) cores)"
python3 - "$work" "${tools[@]}" <<'PY'
import json, os, sys
work, tools = sys.argv[1], sys.argv[2:]
rows = [("cold build", "cold", 1), ("no-change rebuild", "warm", 1),
        ("one file changed", "change", 1), ("1 GB context: first build (1 run)", "big-first", 1),
        ("1 GB context: no-change rebuild", "big-warm", 1),
        ("1 GB context: one file changed", "big-change", 1),
        ("per RUN (20 x RUN true, cold / 20)", "runs-cold", 20)]
def fmt(s):
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"
head = ["scenario"] + tools + [f"{t}/rbuild" for t in tools[1:]]
table = [head]
for label, key, div in rows:
    path = os.path.join(work, key + ".json")
    means = {}
    if os.path.exists(path):
        for r in json.load(open(path))["results"]:
            means[r["command"]] = r["mean"] / div
    line = [label] + [fmt(means[t]) if t in means else "failed" for t in tools]
    for t in tools[1:]:
        line.append(f"{means[t] / means['rbuild']:.1f}x" if t in means and "rbuild" in means else "-")
    table.append(line)
widths = [max(len(r[i]) for r in table) for i in range(len(head))]
for r in table:
    print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
PY
for n in "${notes[@]}"; do echo "bench/build: $n"; done
