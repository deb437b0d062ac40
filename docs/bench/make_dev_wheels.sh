#!/usr/bin/env bash
# What gpu_bench.sh needs in .dev/ besides `python docs/bench/gpu_check.py --make .dev`: the GPU
# machine's Python (3.12) has no Ray and no PyAV and no network. Run here, with network:
#
#     bash docs/bench/make_dev_wheels.sh [.dev]
#
# Writes ray.tar.xz and av.tar.xz (the cp312 wheels of the versions this venv has, unpacked,
# trimmed and stripped) and whl/ (Ray's own needs, installed there only where missing). The device
# tool carries at most 64 MiB with the working tree: Ray's wheel is 79 MB and PyAV's 36, so Ray
# loses what the job never imports (Java jars, RLlib, Data, Serve, Train, Tune, LLM, the
# dashboard's web client) and every binary its debug symbols (PyAV's modules 31 -> 5.5 MB).
# Python's zipfile drops the binaries' x bit: gpu_bench.sh sets it again after unpacking.
set -eu -o pipefail
DEV=$(mkdir -p "${1:-.dev}" && cd "${1:-.dev}" && pwd)
PY=${PY:-$(command -v python)}
RAY=$("$PY" -c "import ray; print(ray.__version__)")
AV=$("$PY" -c "import av; print(av.__version__)")
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PLAT=(--only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64)
"$PY" -m pip download -q "${PLAT[@]}" --no-deps -d "$TMP/dl" "ray==$RAY" "av==$AV"
for t in ray av; do
    mkdir -p "$TMP/$t"
    "$PY" -m zipfile -e "$TMP"/dl/$t-*.whl "$TMP/$t"
done
( cd "$TMP/ray/ray" && rm -rf jars rllib data serve train tune llm tests dashboard/client/build )
find "$TMP/ray" "$TMP/av" -name __pycache__ -prune -exec rm -rf {} +
strip --strip-unneeded "$TMP/ray/ray/_raylet.so" "$TMP/ray/ray/core/src/ray/gcs/gcs_server" \
    "$TMP/ray/ray/core/src/ray/raylet/raylet"
find "$TMP/av/av" -name "*.so" -exec strip --strip-unneeded {} +
for t in ray av; do
    ( cd "$TMP/$t" && tar -cf - ./* | xz -9 -T0 > "$DEV/$t.tar.xz" )
done
mkdir -p "$DEV/whl"
"$PY" -m pip download -q "${PLAT[@]}" -d "$DEV/whl" jsonschema click filelock msgpack "packaging>=24.2" \
    protobuf pyyaml requests
du -sh "$DEV"/*.tar.xz "$DEV/whl"
