#!/usr/bin/env bash
# Container start-up benchmark: `rbuild run --rm IMAGE true` beside `docker run --rm` (Debian's
# 20.10 client against a running dockerd) and `podman run --rm`, on the same offline busybox
# image (scripts/busybox-image, given to Docker with `docker load` and to podman with
# `podman load`). Scenarios, each timed end to end (create, start, wait, remove):
#   1. bridge   the default network (veth pair, address, NAT rules set up and torn down)
#   2. none     --network none (namespaces, cgroup, overlay snapshot only)
#   3. host     --network host
# Prints hyperfine's reports and a table of mean times with each peer's time over rbuild's.
# Measures; asserts nothing. Run as root. A peer is skipped (with the reason) when it is not
# installed, its daemon does not answer, or a trial `run --rm IMAGE true` fails (podman's
# runc cannot set RLIMIT_NOFILE on some machines).
# Env: RUNS (default 20), WARMUP (default 3), RBUILD (a built binary: skips the build),
# NO_DOCKER=1, NO_PODMAN=1.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-20}
warmup=${WARMUP:-3}
command -v hyperfine >/dev/null 2>&1 || { echo "bench/run: hyperfine not installed (apt-get install hyperfine)" >&2; exit 1; }
command -v python3 >/dev/null 2>&1 || { echo "bench/run: python3 not installed" >&2; exit 1; }

if [ -n "${RBUILD:-}" ]; then
    rbuild=$RBUILD
else
    cargo build --release --locked -q -p rbuild-cli
    rbuild=${CARGO_TARGET_DIR:-$PWD/target}/release/rbuild
fi
docker=/usr/bin/docker
work=$(mktemp -d /tmp/rbuild-bench-run.XXXXXX)
image=rbuild-bench/busybox:latest
tools=(rbuild)
docker_loaded=0
cleanup() {
    set +e
    [ "$docker_loaded" = 1 ] && "$docker" rmi -f "$image" >/dev/null 2>&1
    if [[ " ${tools[*]} " == *" podman "* ]]; then
        podman --root "$work/podman/root" --runroot "$work/podman/run" rmi -a -f >/dev/null 2>&1
    fi
    "$rbuild" --root "$work/rb" system prune -a -f >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

RBUILD_ROOT=$work/rb scripts/busybox-image "$rbuild" >/dev/null
"$rbuild" --root "$work/rb" tag busybox:latest "$image"
"$rbuild" --root "$work/rb" save -o "$work/base.tar" "$image"

if [ -n "${NO_DOCKER:-}" ]; then
    echo "bench/run: docker: skipped (NO_DOCKER)"
elif ! [ -x "$docker" ] || ! "$docker" info >/dev/null 2>&1; then
    echo "bench/run: docker: skipped ($docker info failed: no client or no daemon)"
else
    "$docker" image inspect "$image" >/dev/null 2>&1 || docker_loaded=1
    "$docker" load -q -i "$work/base.tar" >/dev/null
    if "$docker" run --rm "$image" true; then tools+=(docker); else echo "bench/run: docker: skipped (trial run failed)"; fi
fi
podman_cmd="podman --root $work/podman/root --runroot $work/podman/run"
if [ -n "${NO_PODMAN:-}" ]; then
    echo "bench/run: podman: skipped (NO_PODMAN)"
elif ! command -v podman >/dev/null 2>&1; then
    echo "bench/run: podman: skipped (not installed; apt-get install podman)"
else
    $podman_cmd load -q -i "$work/base.tar" >/dev/null
    if $podman_cmd run --rm "$image" true; then tools+=(podman); else echo "bench/run: podman: skipped (trial run failed)"; fi
fi

cmd() { # cmd TOOL NETWORK
    case $1 in
        rbuild) echo "$rbuild --root $work/rb run --rm --network $2 $image true" ;;
        docker) echo "$docker run --rm --network $2 $image true" ;;
        podman) echo "$podman_cmd run --rm --network $2 $image true" ;;
    esac
}
echo "bench/run: $(nproc) cores; rbuild $rbuild; tools: ${tools[*]}"
for net in bridge none host; do
    args=()
    for t in "${tools[@]}"; do args+=(-n "$t" "$(cmd "$t" "$net")"); done
    echo "== $net"
    hyperfine -N --runs "$runs" --warmup "$warmup" --export-json "$work/$net.json" "${args[@]}"
done

echo "== summary: mean wall time of run --rm IMAGE true; peer/rbuild > 1 means rbuild is faster"
python3 - "$work" "${tools[@]}" <<'PY'
import json, sys
work, tools = sys.argv[1], sys.argv[2:]
head = ["network"] + tools + [f"{t}/rbuild" for t in tools[1:]]
rows = [head]
for net in ["bridge", "none", "host"]:
    means = {r["command"]: r["mean"] for r in json.load(open(f"{work}/{net}.json"))["results"]}
    row = [net] + [f"{means[t] * 1000:.1f} ms" for t in tools]
    row += [f"{means[t] / means['rbuild']:.1f}x" for t in tools[1:]]
    rows.append(row)
w = [max(len(r[i]) for r in rows) for i in range(len(head))]
for r in rows:
    print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)))
PY
