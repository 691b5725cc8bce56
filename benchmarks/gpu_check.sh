#!/usr/bin/env bash
# probe on a GPU, in one go: install, run the GPU scenarios under `probe doctor`, measure the
# overhead on a GPU loop, check that probe never creates a CUDA context, write a results table.
#
#   OUT=/some/empty/dir bash benchmarks/gpu_check.sh              # on a machine with a GPU
#   OUT=/tmp/out bash benchmarks/gpu_check.sh --cpu-smoke         # the same pipeline on the CPU
#   OUT=/tmp/out GPU_CHECK_DRY_RUN=1 bash benchmarks/gpu_check.sh # same as --cpu-smoke
#
# Run from anywhere (it works in the repository root). Each step is time-boxed and the whole
# script keeps within GPU_CHECK_BUDGET_S (default 450 s); a step that fails is recorded in the
# table and the next one runs. Written to $OUT (at most 8 files, as the device tool returns):
#   results.md      the table: each step's verdict, NVML/CUDA facts, the overhead, the checks
#   results.json    the same, as data
#   report.png      one report through headless Chromium (where a Chromium is installed)
#   reports.tar.gz  every diagnosis JSON and HTML report, the step logs, the overhead tables
#   sessions.tar.gz the recorded sessions (for `probe report` elsewhere), when under 15 MB
#   gpu-check.log   this script's output
#
# Options and environment:
#   --cpu-smoke         toy sizes on the CPU, a few seconds a step: checks the plumbing only
#   --no-venv           use GPU_CHECK_PYTHON as it is (probe importable), no fresh venv
#   GPU_CHECK_PYTHON    the Python that has the CUDA build of torch (default: python3)
#   GPU_CHECK_WHEELS    a folder of wheels for an offline install (default: .whl in the repo;
#                       benchmarks/gpu_check_wheels.sh fills it for the GPU machine's Python)
#   GPU_CHECK_BUDGET_S  the whole script's time, seconds (default 450; 240 for --cpu-smoke)
#   GPU_CHECK_ONLY      a subset of the steps to run, e.g. "b d" for a second, shorter run
#                       after a fix (from: a b c d context overhead screenshot; default all)
#
# The install: a venv over GPU_CHECK_PYTHON's packages (--system-site-packages: its torch, the
# CUDA build, is used as it is; the project never installs torch here), then the project with
# pip, offline from GPU_CHECK_WHEELS when that folder holds wheels, else from the package index
# with constraints.txt. When that Python has no torch, or a CPU-only one, it tries pip's
# torch (the pinned version; on Linux the package index's default build is the CUDA one); a
# CPU-only torch after that is reported as a failure and the GPU steps are not run.

set -u -o pipefail

SMOKE=0
NO_VENV=0
for arg in "$@"; do
    case "$arg" in
        --cpu-smoke) SMOKE=1 ;;
        --no-venv) NO_VENV=1 ;;
        -h | --help) sed -n '2,32p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done
[ -n "${GPU_CHECK_DRY_RUN:-}" ] && [ "${GPU_CHECK_DRY_RUN}" != 0 ] && SMOKE=1
: "${OUT:?set OUT to the folder for the results}"

REPO=$(cd "$(dirname "$0")/.." && pwd)
BASE_PY=${GPU_CHECK_PYTHON:-python3}
WHEELS=${GPU_CHECK_WHEELS:-$REPO/.whl}
if [ "$SMOKE" = 1 ]; then BUDGET=${GPU_CHECK_BUDGET_S:-240}; else BUDGET=${GPU_CHECK_BUDGET_S:-450}; fi
RESERVE=20 # seconds kept for the table and the packing
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
START=$(date +%s)
if [ "$NO_VENV" = 1 ]; then PY=$BASE_PY; else PY=$WORK/venv/bin/python; fi
HELPER=$REPO/benchmarks/gpu_check.py
LAST_RC=0

left() { echo $((BUDGET - ($(date +%s) - START))); }
ONLY=" ${GPU_CHECK_ONLY:-a b c d context overhead screenshot} "
wanted() { [[ "$ONLY" == *" $1 "* ]]; }

# step NAME LIMIT CMD...: run CMD for at most LIMIT seconds (less if the budget is short),
# record its exit status and time in $WORK/steps.tsv, and say whether it succeeded.
step() {
    local name=$1 limit=$2
    shift 2
    local avail=$(($(left) - RESERVE))
    if [ "$avail" -lt 5 ]; then
        echo "== $name: skipped, out of time"
        printf '%s\t%s\t%s\n' "$name" "skipped (out of time)" 0 >>"$WORK/steps.tsv"
        return 1
    fi
    [ "$limit" -gt "$avail" ] && limit=$avail
    echo "== $name (at most $limit s)"
    local t0 rc
    t0=$(date +%s)
    GPU_CHECK_STEP_LIMIT=$limit timeout -k 10 "$limit" "$@"
    rc=$?
    LAST_RC=$rc
    [ "$rc" = 124 ] && rc="124 (timed out)"
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - t0))" >>"$WORK/steps.tsv"
    echo "== $name: exit status $rc after $(($(date +%s) - t0)) s"
    [ "$rc" = 0 ]
}

install_project() {
    local pip=("$PY" -m pip)
    if ! "$BASE_PY" -m venv --system-site-packages "$WORK/venv"; then
        echo "no ensurepip for $BASE_PY: a venv without pip, filled by $BASE_PY's pip"
        rm -rf "$WORK/venv"
        "$BASE_PY" -m venv --system-site-packages --without-pip "$WORK/venv" || return 1
        pip=("$BASE_PY" -m pip --python "$PY")
    fi
    # A base Python that is itself a venv (the CUDA images' python3 is) has its packages, torch
    # among them, in its own site-packages, which --system-site-packages does not reach: a .pth
    # file puts them after the new venv's own.
    local own
    own=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') || return 1
    "$BASE_PY" -c 'import site; print("\n".join(site.getsitepackages()))' >"$own/_gpu_check_base.pth"
    # built from a copy: pip builds a local project in its folder (build/, *.egg-info)
    mkdir -p "$WORK/src" && cp -r "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/probe" "$WORK/src/"
    if compgen -G "$WHEELS/*.whl" >/dev/null; then
        echo "installing offline from $WHEELS: $(cd "$WHEELS" && ls -- *.whl | tr '\n' ' ')"
        "${pip[@]}" install -q --no-index --find-links "$WHEELS" "$WORK/src"
    else
        "${pip[@]}" install -q -c "$REPO/constraints.txt" "$WORK/src"
    fi
}

# When the install fails: probe from the source tree, the carried wheels unpacked beside it.
install_fallback() {
    compgen -G "$WHEELS/*.whl" >/dev/null || return 0
    "$BASE_PY" -m pip install -q --no-deps --no-index --target "$WORK/site" "$WHEELS"/*.whl
}

# The pinned torch with pip's own defaults (no configured find-links, which could hold a CPU
# build of the same version; a torch wheel in GPU_CHECK_WHEELS is used if there is one).
install_torch() {
    local pip=("$PY" -m pip) extra=()
    "$PY" -m pip --version >/dev/null 2>&1 || pip=("$BASE_PY" -m pip --python "$PY")
    compgen -G "$WHEELS/torch-*.whl" >/dev/null && extra=(--find-links "$WHEELS")
    env -u PIP_FIND_LINKS -u PIP_CONSTRAINT -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL \
        PIP_CONFIG_FILE=/dev/null \
        "${pip[@]}" install -q -c "$REPO/constraints.txt" ${extra[@]+"${extra[@]}"} torch
}

main() {
    echo "gpu_check: $([ "$SMOKE" = 1 ] && echo 'CPU smoke run' || echo 'GPU run'), budget $BUDGET s"
    echo "work folder $WORK, results in $OUT"
    cd "$REPO" || exit 1
    : >"$WORK/steps.tsv"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total \
        --format=csv,noheader | sed 's/^/nvidia-smi: /'

    local tiny=() loop_s=20 context_s=8 rounds=2 ab_seconds=6 wl=()
    if [ "$SMOKE" = 1 ]; then
        tiny=(--tiny)
        loop_s=2
        context_s=2
        rounds=1
        wl=(--workload-arg=--tiny)
    fi

    local ready=1
    if [ "$NO_VENV" = 0 ]; then
        export PIP_DISABLE_PIP_VERSION_CHECK=1
        if ! step install 150 bash -c "$(declare -f install_project); BASE_PY='$BASE_PY' \
            WORK='$WORK' PY='$PY' WHEELS='$WHEELS' REPO='$REPO' install_project"; then
            echo "the install failed: running probe from the source tree with $BASE_PY"
            step install-fallback 90 bash -c "$(declare -f install_fallback); \
                BASE_PY='$BASE_PY' WORK='$WORK' WHEELS='$WHEELS' install_fallback" || ready=0
            PY=$BASE_PY
            export PYTHONPATH="$REPO:$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
            NO_VENV=1 # no torch install into a Python that is not ours
        fi
    fi
    # torch-info: 0 a CUDA device is usable; 3 a CUDA build that sees no device; else no torch
    # or a CPU-only build, for which the pinned torch is tried once
    if [ "$ready" = 1 ] && ! step torch 60 "$PY" "$HELPER" torch-info --work "$WORK"; then
        if [ "$SMOKE" = 0 ] && [ "$NO_VENV" = 0 ] && [ "$LAST_RC" != 3 ]; then
            echo "no CUDA build of torch in $BASE_PY: trying pip's (the pinned version)"
            step torch-install 200 bash -c "$(declare -f install_torch); PY='$PY' \
                BASE_PY='$BASE_PY' REPO='$REPO' WHEELS='$WHEELS' install_torch"
            step torch-again 60 "$PY" "$HELPER" torch-info --work "$WORK" || ready=0
        elif [ "$SMOKE" = 0 ]; then
            ready=0
        fi
    fi

    if [ "$ready" = 1 ]; then
        for s in a b c d; do
            wanted "$s" || continue
            step "scenario-$s" 110 "$PY" "$HELPER" scenario "$s" --work "$WORK" --python "$PY" \
                --seconds "$loop_s" ${tiny[@]+"${tiny[@]}"} --timeout 100
        done
        wanted context && step context 70 "$PY" "$HELPER" context --work "$WORK" --python "$PY" \
            --seconds "$context_s" --timeout 60
        local steps=20
        [ "$SMOKE" = 0 ] && steps=$("$PY" "$HELPER" steps-for --work "$WORK" \
            --seconds "$ab_seconds" --default 200)
        wanted overhead && echo "overhead A/B: $steps steps of (a) a run" &&
            step overhead 200 "$PY" benchmarks/overhead.py \
                --workload examples/scenarios/gpu_healthy.py --steps "$steps" --rounds "$rounds" \
                --no-control ${wl[@]+"${wl[@]}"} \
                --json "$WORK/overhead.json" --markdown "$WORK/overhead.md"
        wanted screenshot && step screenshot 45 "$PY" "$HELPER" screenshot --work "$WORK" --png "$OUT/report.png" \
            --timeout 40
    fi

    local table_py=$PY smoke_flag=()
    [ -x "$PY" ] || table_py=python3
    [ "$SMOKE" = 1 ] && smoke_flag=(--smoke)
    timeout 30 "$table_py" "$HELPER" table --work "$WORK" --out "$OUT" ${smoke_flag[@]+"${smoke_flag[@]}"}
    local verdict=$?

    # reports, diagnoses and logs in one file, the sessions in another (the tool returns 8 files)
    local packed=()
    for f in diagnoses logs results overhead.json overhead.md steps.tsv; do
        [ -e "$WORK/$f" ] && packed+=("$f")
    done
    (cd "$WORK" && compgen -G "sessions/*.html" >/dev/null) &&
        packed+=($(cd "$WORK" && ls sessions/*.html))
    tar -czf "$OUT/reports.tar.gz" -C "$WORK" "${packed[@]}"
    if [ -d "$WORK/sessions" ]; then
        tar -czf "$OUT/sessions.tar.gz" -C "$WORK" --exclude='*.html' sessions
        if [ "$(stat -c %s "$OUT/sessions.tar.gz")" -gt $((15 * 1024 * 1024)) ]; then
            echo "sessions.tar.gz over 15 MB: left out"
            rm -f "$OUT/sessions.tar.gz"
        fi
    fi
    echo "gpu_check: done in $(($(date +%s) - START)) s, exit status $verdict"
    [ -n "${GPU_CHECK_KEEP:-}" ] || rm -rf "$WORK"
    return "$verdict"
}

main 2>&1 | tee "$OUT/gpu-check.log"
exit "${PIPESTATUS[0]}"
