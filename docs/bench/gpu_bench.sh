#!/usr/bin/env bash
# The GPU bench of the whole Ray annotate job: run once on the GPU machine, from the repository root:
#
#     bash docs/bench/gpu_bench.sh            # results in $OUT (the device tool sets it)
#
# That machine has python3.12 with torch (CUDA), numpy, pandas, pyarrow, OpenCV 5 (no Haar cascade),
# but no Ray, no PyAV and no network. What it lacks travels in .dev/ (git-ignored): ray.tar.xz and
# av.tar.xz (the cp312 wheels unpacked, trimmed and stripped to fit the device tool's 64 MiB) and
# whl/ (Ray's own needs), all three written by `bash docs/bench/make_dev_wheels.sh .dev`, and what
# `docs/bench/gpu_check.py --make .dev` writes: haarcascades/ (OpenCV 4's XML, for the torch
# detector), clips/ (real clips the corpus is made from), ytf68/ (the labelled faces the NME check
# uses), opencv_boxes.json (OpenCV 4's boxes, to compare the torch detector with).
#
# Steps: unpack, make facetracks importable (links in the package's layout, nothing installed),
# nvidia-smi, gpu_check.py (torch Haar and crops on CUDA against OpenCV), then
# `facetracks bench --actors 1:1,4:0.25 --corpus ...`: one actor with the whole GPU, then four
# sharing it; the JSON is rewritten after each profile, so a run stopped early keeps what it measured.
# Everything printed goes to $OUT/log.txt too. Each setting below can be given in the environment.
set -u -o pipefail

CORPUS=${CORPUS:-8}                    # clips in the corpus
CORPUS_SECONDS=${CORPUS_SECONDS:-80}   # seconds each (8 x 80 s: over 10 minutes of video, ~18k frames)
ACTORS=${ACTORS:-1:1,4:0.25,8:0.125}           # N:G: N actors with a GPU share of G each
STREAMS=${STREAMS:-16}                 # streams each actor follows at once
SEGMENT=${SEGMENT:-10}                 # seconds per segment: 8 per clip, each with a 1 s warm-up overlap
PROFILES=${PROFILES:-accurate fast}
DETECTOR=${DETECTOR:-torch}            # the GPU actors' detector: torch (on the GPU) or opencv (on the actor's CPUs: needs OpenCV 4 there)
BENCH_TIMEOUT=${BENCH_TIMEOUT:-380}    # seconds for the bench (the whole script stays under 7.5 minutes)
CHECK_TIMEOUT=${CHECK_TIMEOUT:-90}    # 0: skip gpu_check.py
GRAPHS_TIMEOUT=${GRAPHS_TIMEOUT:-120}  # 0: skip gpu_graphs.py (graphs stay on)
MPS=${MPS:-0}                          # 1: start NVIDIA MPS first (several actors' kernels share the GPU at once)
GRAPHS_AB=${GRAPHS_AB:-0}              # 1: the bench again with FACETRACKS_CUDA_GRAPHS=0 (bench_gpu_nographs.json)
# More runs after the main one, each against it on the same warm machine, ';'-separated, each
# "NAME ACTORS STREAMS PROFILES SECONDS [VAR=VALUE ...] [--bench-option ...]" (PROFILES comma-separated),
# written to bench_gpu_NAME.json with no NME check; e.g. "nographs 1:1 16 fast,accurate 90
# FACETRACKS_CUDA_GRAPHS=0" or "server 15:0 4 fast,accurate 120 --stage-server" (15 CPU actors of
# 4 streams feeding one stage server: annotate --stage-server)
EXTRA=${EXTRA:-}
AB_ACTORS=${AB_ACTORS:-}               # GRAPHS_AB's actors (default: ACTORS)
AB_TIMEOUT=${AB_TIMEOUT:-}             # GRAPHS_AB's seconds (default: BENCH_TIMEOUT)
PY=${PY:-python3}
REPO=$PWD
DEV=${DEV:-$REPO/.dev}
SITE=${SITE:-/tmp/site}
USE_CARRIED=${USE_CARRIED:-1}          # 0: unpack the tarballs aside and check their layout only (a test elsewhere)
OUT=${OUT:-$REPO/out/gpu_bench}
mkdir -p "$OUT" "$SITE"
DEV=$(cd "$DEV" && pwd) OUT=$(cd "$OUT" && pwd)

main() {
    local t0=$SECONDS rc=0
    step() { echo "== $* ($((SECONDS - t0)) s)"; }

    step "unpack Ray and PyAV into $SITE"
    local into=$SITE
    [ "$USE_CARRIED" = 1 ] || into=$(mktemp -d)
    for t in ray av; do
        tar -xJf "$DEV/$t.tar.xz" -C "$into" || { echo "cannot unpack $DEV/$t.tar.xz"; return 1; }
        [ -f "$into/$t/__init__.py" ] && ls -d "$into/$t"-*.dist-info >/dev/null || { echo "$t.tar.xz: no $t/ and $t-*.dist-info at its top"; return 1; }
    done
    chmod -R a+x "$into/ray/core/src/ray" 2>/dev/null    # a wheel unzipped by Python's zipfile loses the binaries' x bit
    [ "$USE_CARRIED" = 1 ] || { echo "layout ok: $(ls "$into" | tr '\n' ' ')"; rm -rf "$into"; }

    step "facetracks as a package of links (setup.cfg's package_dir), nothing installed"
    # Python runs from $SITE: from the repository's root, its facetracks/ folder (only the package's
    # __init__) would come first on sys.path, the driver's and (Ray adds the driver's folder) the workers'
    mkdir -p "$SITE/facetracks"
    for f in facetracks/*.py; do ln -sfn "$REPO/$f" "$SITE/facetracks/"; done
    for d in models pipeline training jobs samples; do ln -sfn "$REPO/$d" "$SITE/facetracks/$d"; done
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    cd "$SITE" || return 1
    export FACETRACKS_CASCADE_DIR="$DEV/haarcascades" PYTHONUNBUFFERED=1 SITE
    # Ray's own needs: install from whl/ only those this Python lacks (the machine's own stay first)
    local need=() m w ws
    for m in jsonschema:jsonschema,attrs,jsonschema_specifications,referencing,rpds_py,typing_extensions \
             msgpack:msgpack click:click filelock:filelock yaml:pyyaml google.protobuf:protobuf \
             requests:requests,urllib3,idna,certifi,charset_normalizer packaging:packaging; do
        "$PY" -c "import ${m%%:*}" 2>/dev/null && continue
        ws=${m#*:}
        for w in ${ws//,/ }; do need+=("$DEV"/whl/"$w"-*.whl); done
    done
    if [ ${#need[@]} -gt 0 ]; then
        echo "installing from whl/: ${need[*]##*/}"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "${need[@]}" || return 1
    fi
    "$PY" - <<'EOF' || return 1
import os, sys
import av, cv2, ray, torch
import facetracks.jobs.cli
from facetracks.jobs import bench_paths
print(f"python {sys.version.split()[0]}, torch {torch.__version__} (cuda {torch.cuda.is_available()}), "
      f"OpenCV {cv2.__version__} (CascadeClassifier: {hasattr(cv2, 'CascadeClassifier')}), ray {ray.__version__}, "
      f"av {av.__version__}, facetracks from {os.path.dirname(facetracks.__file__)}")
assert os.path.isfile(bench_paths.SAMPLE), bench_paths.SAMPLE
assert facetracks.__file__.startswith(os.environ["SITE"]), facetracks.__file__
EOF
    nvidia-smi || echo "(no nvidia-smi)"
    nproc

    if [ "$CHECK_TIMEOUT" != 0 ]; then
        step "gpu_check: torch Haar and crops against OpenCV"
        timeout "$CHECK_TIMEOUT" "$PY" "$REPO/docs/bench/gpu_check.py" --check "$DEV" "$OUT/gpu_check.json" || echo "gpu_check: rc $?"
    fi
    if [ "$MPS" = 1 ]; then
        step "MPS"
        if command -v nvidia-cuda-mps-control >/dev/null && nvidia-cuda-mps-control -d \
                && timeout 60 "$PY" -c "import torch; print('MPS client ok', torch.ones(1, device='cuda').item())"; then
            echo "MPS on"
        else
            echo "MPS not available here; going on without"
            echo quit | nvidia-cuda-mps-control 2>/dev/null
        fi
    fi

    if [ "$GRAPHS_TIMEOUT" != 0 ]; then
        step "CUDA graphs of the network against the eager model; torch Haar in batches"
        timeout "$GRAPHS_TIMEOUT" "$PY" "$REPO/docs/bench/gpu_graphs.py" "$OUT/gpu_graphs.json" || { echo "graphs off for the bench"; export FACETRACKS_CUDA_GRAPHS=0; }
    fi

    bench() {    # $1: the JSON's path, $2: actors, $3: seconds, $4: streams, $5: profiles, then more options
        local json=$1 actors=$2 secs=$3 streams=${4:-$STREAMS} profiles=${5:-$PROFILES}
        shift 5 2>/dev/null || shift $#
        # shellcheck disable=SC2086  # profiles: words
        timeout "$secs" "$PY" -m facetracks.jobs.cli bench --actors "$actors" --streams "$streams" \
            --corpus "$CORPUS" --corpus-seconds "$CORPUS_SECONDS" --profiles $profiles --detector "$DETECTOR" --segment-seconds "$SEGMENT" \
            --data "$DEV/ytf68" --clips-from "$DEV/clips" --json "$json" "$@"
    }
    step "bench: corpus $CORPUS x $CORPUS_SECONDS s, actors $ACTORS, streams $STREAMS, profiles $PROFILES"
    bench "$OUT/bench_gpu.json" "$ACTORS" "$BENCH_TIMEOUT" || rc=$?
    if [ "$GRAPHS_AB" = 1 ] && [ "${FACETRACKS_CUDA_GRAPHS:-1}" != 0 ]; then
        step "the same bench without CUDA graphs (network and cascade op by op): what the graphs give in the job"
        FACETRACKS_CUDA_GRAPHS=0 bench "$OUT/bench_gpu_nographs.json" "${AB_ACTORS:-$ACTORS}" "${AB_TIMEOUT:-$BENCH_TIMEOUT}" || rc=$?
    fi
    local run name actors streams profiles secs rest
    IFS=';' read -ra runs <<< "$EXTRA"
    for run in "${runs[@]}"; do
        read -r name actors streams profiles secs rest <<< "$run"
        [ -n "$name" ] || continue
        local envs=() opts=() w
        for w in $rest; do [[ $w == --* ]] && opts+=("$w") || envs+=("$w"); done
        step "extra run $name: actors $actors, streams $streams, profiles $profiles, ${rest:-no env}"
        ([ ${#envs[@]} = 0 ] || export "${envs[@]}"; bench "$OUT/bench_gpu_$name.json" "$actors" "$secs" "$streams" "${profiles//,/ }" --no-accuracy "${opts[@]}") || rc=$?
    done
    step "done, bench rc $rc"
    return $rc
}

main 2>&1 | tee "$OUT/log.txt"
