#!/usr/bin/env bash
# Parsing benchmark: a generated 10,000-instruction Dockerfile (every instruction kind,
# continuations, heredocs, mounts), parsed and validated by `rbuild check` and dumped by
# `rbuild debug parse --json`. Prints hyperfine's report (or `time` when hyperfine is
# missing). Measures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p rbuild-cli
rbuild=$PWD/target/release/rbuild
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 - "$work/Dockerfile" <<'PY'
import sys
lines = ["# syntax=docker/dockerfile:1", "ARG BASE=busybox", "FROM ${BASE} AS build"]
body = [
    'RUN --mount=type=cache,target=/root/.cache echo "step {i}" \\\n    && true',
    'ENV K{i}="value {i}" OTHER{i}=x',
    'COPY --chown=1000:1000 src/{i}.txt /app/{i}.txt',
    'LABEL l{i}="label {i}"',
    'RUN <<EOF\necho heredoc {i}\nEOF',
    'WORKDIR /w/{i}',
    'EXPOSE {p}/tcp',
    'ARG A{i}=default',
    'USER {i}:{i}',
    'CMD ["echo", "{i}"]',
]
n = 0
while n < 10000:
    lines.append(body[n % len(body)].format(i=n, p=1024 + n % 60000))
    n += 1
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
echo "bench/parse: $(wc -l < "$work/Dockerfile") lines, $(du -h "$work/Dockerfile" | cut -f1)"
if command -v hyperfine >/dev/null 2>&1; then
    hyperfine --warmup 3 -N \
        "$rbuild check -f $work/Dockerfile $work" \
        "$rbuild debug parse --json $work/Dockerfile"
else
    time "$rbuild" check -f "$work/Dockerfile" "$work"
    time "$rbuild" debug parse --json "$work/Dockerfile" >/dev/null
fi
