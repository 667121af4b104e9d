#!/usr/bin/env bash
# GPU check on an offline CUDA machine: `python -m portable_nn compare` on seed,
# digits and mlp, `python -m benchmarks` (cases a, b, c, then g) on cupy,
# torch:cuda and jax:gpu, data-parallel fit(client=) on a loopback Dask cluster
# of CuPy workers (scripts/dask_gpu_check.py), then the test suite on each backend.
#
#   scripts/gpu_check.sh WHEELDIR OUTDIR
#
# WHEELDIR holds the wheels from scripts/fetch_gpu_wheels.sh; they are installed
# with pip --no-index --no-deps into a temporary folder put first on PYTHONPATH
# (the image's python3 must already have numpy, cupy, torch and jax).
# OUTDIR receives one log per step, compare_*.json (and .png when matplotlib
# is there), bench_gpu.json, bench_gpu_cnn.json, dask_gpu.json, env.txt and summary.txt with every step's exit
# status (124 = hit its timeout), the comparisons' numbers and the bench's
# targets (e.g. portable_nn on cupy within 1.05x of PyTorch eager CUDA).
# A failing step never stops the others.
#
# The whole script ends within GPU_CHECK_BUDGET seconds (default 550, or 280
# without the bench): the timed comparisons and then the bench (at most 150 s
# for cases a, b, c, then 120 s for the CNN case g, in its own process and JSON)
# run first, one after another on an otherwise idle machine; then the dask_gpu
# step (at most 120 s, typically about 40: dask_cuda.LocalCUDACluster when the
# image has dask-cuda, else a 2-worker LocalCluster sharing the GPU; the
# all-reduce exchange (torch.distributed NCCL, or gloo with the reason) and the
# hub: float64 parity with one process <= 1e-12, the workers' array types and
# collective, rows/s, exchange per step; skipped with a note when distributed
# is not importable: fetch the wheels with --with-dask); then the test
# suites run in parallel (they check numbers, not speed) in the time left,
# test_parity.py and test_notebook.py first in each.
#
# Knobs (environment): PYTHON (default python3), GPU_CHECK_BUDGET,
# GPU_CHECK_TEST_BACKENDS (default "cupy torch:cuda jax:gpu"),
# GPU_CHECK_COMPARE_BACKENDS (default numpy,cupy,torch:cuda,jax:gpu),
# GPU_CHECK_BENCH_BACKENDS (the bench's --device-backend, default
# cupy,torch:cuda,jax:gpu; empty skips the bench), GPU_CHECK_DASK_BACKEND (the
# params' backend of the dask_gpu step, default cupy; empty skips it).
# Dry run on a machine without a GPU:
#   GPU_CHECK_TEST_BACKENDS="numpy array_api_strict" GPU_CHECK_BENCH_BACKENDS=torch,array_api_strict \
#   GPU_CHECK_COMPARE_BACKENDS=numpy,array_api_strict,torch,jax GPU_CHECK_DASK_BACKEND=numpy \
#   scripts/gpu_check.sh WHEELDIR OUTDIR
set -uo pipefail # no -e: every step runs and records its status

# usage WHY: the usage line, then (as argparse does) one "error:" line saying what was wrong; exit 2
usage() {
    echo "usage: $0 WHEELDIR OUTDIR  (knobs: environment variables, see the header)" >&2
    echo "$0: error: $1" >&2
    exit 2
}

if [[ ${1-} == -h || ${1-} == --help ]]; then
    echo "usage: $0 WHEELDIR OUTDIR  (knobs: environment variables, see the header)"
    exit 0
fi
for arg in "$@"; do
    [[ $arg != -* ]] || usage "unrecognized argument: $arg (the only arguments are WHEELDIR and OUTDIR)"
done
[[ $# -eq 2 ]] || usage "expected WHEELDIR and OUTDIR, got $# argument(s)"
[[ -d $1 ]] || usage "WHEELDIR $1 is not a folder"
wheeldir=$(cd "$1" && pwd) || usage "WHEELDIR $1 cannot be entered"
mkdir -p "$2" || exit 2
outdir=$(cd "$2" && pwd) || exit 2
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd) || exit 2
cd "$repo" || exit 2

python=${PYTHON:-python3}
read -r -a test_backends <<<"${GPU_CHECK_TEST_BACKENDS:-cupy torch:cuda jax:gpu}"
compare_backends=${GPU_CHECK_COMPARE_BACKENDS:-numpy,cupy,torch:cuda,jax:gpu}
bench_backends=${GPU_CHECK_BENCH_BACKENDS-cupy,torch:cuda,jax:gpu} # set but empty: no bench
dask_backend=${GPU_CHECK_DASK_BACKEND-cupy} # set but empty: no dask_gpu step
bench_s=150
bench_cnn_s=120
bench_precision_s=90
bench_gpt_s=60
dask_s=120
wanted=$((280 + (${#bench_backends} > 0 ? bench_s + bench_cnn_s + bench_gpt_s + bench_precision_s : 0)))
# one device call runs at most 600 s: by default the steps share 560 (the test suites, last, get what is left)
budget=${GPU_CHECK_BUDGET:-$((wanted < 560 ? wanted : 560))}
problems=(seed digits mlp)
summary=$outdir/summary.txt
end=$((SECONDS + budget))
: >"$summary"

# XLA would take 75% of the GPU's memory at its first use, starving CuPy and
# torch in the same process and the test suites running beside it.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export PYTHONDONTWRITEBYTECODE=1
export PYTHONUNBUFFERED=1

site=$(mktemp -d "${TMPDIR:-/tmp}/portable_nn-site.XXXXXX") || exit 2
trap 'rm -rf "$site"' EXIT
export PYTHONPATH="$site:$repo${PYTHONPATH:+:$PYTHONPATH}"

# limit WANTED: seconds a step may take, capped so the budget holds
# (15 s are kept back for timeout's kill grace and the summary).
limit() {
    local left=$((end - SECONDS - 15))
    ((left < 1)) && left=1
    if (($1 < left)); then echo "$1"; else echo "$left"; fi
}

# record NAME RC SECONDS [NOTE]: one line of summary.txt
record() {
    local note=${4:+  ($4)}
    [[ $2 == 124 ]] && note="  (timed out)"
    printf '%-32s rc=%-3s %4ss%s\n' "$1" "$2" "$3" "$note" >>"$summary"
}

# step NAME SECONDS CMD...: run CMD under timeout, output to the terminal and OUTDIR/NAME.log.
# SIGINT first, so pytest and Python print what they have before stopping.
step() {
    local name=$1 t start rc
    t=$(limit "$2")
    shift 2
    start=$SECONDS
    echo "== $name (timeout ${t}s): $*" | tee "$outdir/$name.log"
    timeout -s INT -k 10 "$t" "$@" 2>&1 | tee -a "$outdir/$name.log"
    rc=${PIPESTATUS[0]}
    record "$name" "$rc" $((SECONDS - start))
}

# --- 1. install the wheels ------------------------------------------------------------------
shopt -s nullglob
wheels=("$wheeldir"/*.whl)
shopt -u nullglob
if ((${#wheels[@]} == 0)); then
    echo "no wheels in $wheeldir (run scripts/fetch_gpu_wheels.sh $wheeldir first)" | tee "$outdir/pip_install.log"
    record pip_install 1 0
else
    step pip_install 60 "$python" -m pip install --no-index --no-deps --quiet --target "$site" "${wheels[@]}"
fi

# --- 2. environment: versions, GPU, and that every backend spec used below resolves ----------
{
    date -u +"%Y-%m-%dT%H:%M:%SZ"
    uname -a
    nvidia-smi -L 2>&1 || echo "nvidia-smi: not available"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || true
} >"$outdir/env.txt"
specs="${test_backends[*]} ${compare_backends//,/ } ${bench_backends//,/ } $dask_backend"
step environment 60 "$python" - "$specs" <<'EOF'
import importlib, sys
print("python", sys.version.split()[0], sys.executable)
for name in ("numpy", "array_api_compat", "array_api_strict", "cupy", "torch", "jax", "safetensors",
             "tqdm", "pytest", "hypothesis", "sklearn", "matplotlib", "dask", "distributed", "dask_cuda"):
    try:
        module = importlib.import_module(name)
        print(f"{name:17s} {getattr(module, '__version__', '?'):12s} {getattr(module, '__file__', '')}")
    except Exception as e:
        print(f"{name:17s} MISSING ({type(e).__name__}: {e})")
import portable_nn as pnn
print("available_backends:", pnn.available_backends())
bad = 0
for spec in dict.fromkeys(sys.argv[1].split()):
    try:
        be = pnn.get_backend(spec)
        print(f"get_backend({spec!r}) -> {be!r}, is_gpu={be.is_gpu}, {be.describe_device()}")
    except Exception as e:
        bad = 1
        print(f"get_backend({spec!r}) FAILED: {type(e).__name__}: {e}")
sys.exit(bad)
EOF
cat "$outdir/environment.log" >>"$outdir/env.txt"

# --- 3. the comparison first, one problem at a time, while the machine is idle ------------
plot=0
"$python" -c "import matplotlib" 2>/dev/null && plot=1
for p in "${problems[@]}"; do
    extra=()
    ((plot)) && extra=(--plot "$outdir/compare_$p.png")
    step "compare_$p" 60 "$python" -m portable_nn compare --backends "$compare_backends" --problem "$p" \
        --json "$outdir/compare_$p.json" "${extra[@]}"
done

# the bench's GPU candidates (portable_nn on each backend, PyTorch eager on CUDA) and targets, still idle
if [[ -n $bench_backends ]]; then
    step bench_gpu "$bench_s" "$python" -m benchmarks --quick --cases a,b,c \
        --device-backend "$bench_backends" --json "$outdir/bench_gpu.json"
    # case g (CNN step; goal: cupy and torch:cuda within 2x of PyTorch eager CUDA) apart, so a
    # timeout there cannot cost a, b and c their JSON
    step bench_gpu_cnn "$bench_cnn_s" "$python" -m benchmarks --quick --cases g \
        --device-backend "$bench_backends" --json "$outdir/bench_gpu_cnn.json"
    # case j (the GPT step: 2 blocks, dim 128, context 128) on each device backend
    step bench_gpu_gpt "$bench_gpt_s" "$python" -m benchmarks --quick --cases j \
        --device-backend "$bench_backends" --json "$outdir/bench_gpu_gpt.json"
    # case i: the MLP, CNN and GPT steps in float32, bfloat16 and float16 on each device backend: the speed-ups
    step bench_gpu_precision "$bench_precision_s" "$python" -m benchmarks --quick --cases i \
        --device-backend "$bench_backends" --json "$outdir/bench_gpu_precision.json"
fi

# data-parallel fit(client=) on a loopback Dask cluster whose workers hold the params' backend (CuPy): the
# all-reduce (NCCL between the workers' GPUs; gloo through host memory, with the reason, where NCCL is
# missing) and the hub, each against one process
if [[ -n $dask_backend ]]; then
    if "$python" -c "import distributed" 2>/dev/null; then
        t_dask=$(limit "$dask_s")
        # the script's own bound ends it (JSON written, cluster closed) before the step's timeout
        step dask_gpu "$t_dask" "$python" scripts/dask_gpu_check.py --backend "$dask_backend" \
            --timeout $((t_dask > 20 ? t_dask - 10 : t_dask)) --json "$outdir/dask_gpu.json"
    else
        echo "== dask_gpu skipped: distributed is not importable (scripts/fetch_gpu_wheels.sh WHEELDIR --with-dask)" |
            tee "$outdir/dask_gpu.log"
        record dask_gpu skip 0 "distributed not importable; fetch the wheels with --with-dask"
    fi
fi

# --- 4. the test suite on each backend, in parallel, parity tests first, in the time left -----
t_tests=$(limit 170)
declare -A pids starts
for b in "${test_backends[@]}"; do
    name="tests_${b//:/_}"
    starts[$name]=$SECONDS
    echo "== $name (timeout ${t_tests}s): PORTABLE_NN_TEST_BACKEND=$b pytest" | tee "$outdir/$name.log"
    PORTABLE_NN_TEST_BACKEND=$b timeout -s INT -k 10 "$t_tests" \
        "$python" -m pytest -q -rfEs -p no:cacheprovider --durations=10 \
        tests/test_parity.py tests/test_notebook.py tests >>"$outdir/$name.log" 2>&1 &
    pids[$name]=$!
done
for name in "${!pids[@]}"; do
    wait "${pids[$name]}"
    rc=$?
    record "$name" "$rc" $((SECONDS - starts[$name]))
    echo "-- $name: rc=$rc; $(tail -n 1 "$outdir/$name.log" || true)"
done

# --- 5. digest: deviations and speedups from the JSON files ----------------------------------
{
    echo
    echo "test results (last line of each log):"
    for b in "${test_backends[@]}"; do
        printf '  %-22s %s\n' "$b" "$(tail -n 1 "$outdir/tests_${b//:/_}.log" 2>/dev/null || true)"
    done
    echo
    timeout 10 "$python" - "$outdir" "$bench_backends" "$dask_backend" "${problems[@]}" <<'EOF'
import json, os, sys
outdir, bench_backends, dask_backend, problems = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
for p in problems:
    path = os.path.join(outdir, f"compare_{p}.json")
    if not os.path.exists(path):
        print(f"compare {p}: no JSON (see compare_{p}.log)")
        continue
    data = json.load(open(path))
    print(f"compare {p} ({data['dtype']}, {data['steps']} steps):")
    for label, r in data["backends"].items():
        t = r["timing"]
        print(f"  {label:18s} {r['device'][:34]:34s} {t['median_s'] * 1e3:9.3f} ms/step  "
              f"x{r['speedup_vs_numpy'] or 0:7.2f}  loss dev {r['max_rel_loss_deviation'] or 0:.1e}  "
              f"param dev {r['max_param_deviation'] or 0:.1e}")
    for label, why in {**data["missing"], **data["failed"]}.items():
        print(f"  {label:18s} NOT RUN: {why[:150]}")
for name in ("bench_gpu", "bench_gpu_cnn", "bench_gpu_gpt"):
    path = os.path.join(outdir, f"{name}.json")
    if bench_backends and not os.path.exists(path):
        print(f"bench: no JSON (see {name}.log)")
        continue
    if not bench_backends:
        continue
    data = json.load(open(path))
    print(f"bench --cases {','.join(data['settings']['cases'])} --device-backend {bench_backends} "
          "(targets; not run = a side did not run):")
    for t in data["targets"]:
        measured = "not run" if t["ratio"] is None else f"{t['ratio']:.3g}"
        status = {True: "met", False: "MISSED", None: "not run"}[t["met"]]
        print(f"  {t['case']}. [{status:>7}] {t['goal']}: {t['ratio_name']} = {measured} "
              f"(goal {t['op']} {t['threshold']:g})")
    for key, case in data["cases"].items():
        for label, why in {**case["skipped"], **case["failed"]}.items():
            if " on " in label or "(cuda)" in label or label == "case":
                print(f"  {key}. NOT RUN {label}: {why[:150]}")
path = os.path.join(outdir, "bench_gpu_precision.json")
if bench_backends and os.path.exists(path):
    case = json.load(open(path))["cases"].get("i", {})
    print("mixed precision (case i): time/step and float32's time over this one's (> 1: faster):")
    for row in case.get("rows", []):
        speed = "-" if row.get("speedup") is None else f"{row['speedup']:.2f}x"
        print(f"  {row['name']:34s} {row['median_s'] * 1e3:9.3f} ms  {speed}")
elif bench_backends:
    print("bench_gpu_precision: no JSON (see bench_gpu_precision.log)")
path = os.path.join(outdir, "dask_gpu.json")
if dask_backend and os.path.exists(path):
    d = json.load(open(path))
    if d.get("error"):
        print(f"dask_gpu ({dask_backend}): FAILED: {d['error'][:200]} (see dask_gpu.log)")
    else:
        print(f"dask_gpu ({d['backend']} on {d['device']}; {d['cluster']}, {d['n_workers']} worker(s)); "
              f"workers hold {d['expected_worker_backend']} arrays: {'yes' if d['workers_hold_backend_arrays'] else 'NO'}; "
              f"one process {d['one_process']['rows_per_s']:.0f} rows/s")
        for name, e in d.get("exchanges", {}).items():
            inside = "" if e.get("collective_s_per_step") is None else \
                f", {e['collective_s_per_step'] * 1e3:.2f} ms/step inside the {e['collective']} all-reduce"
            print(f"  {name:9s}: parity {'ok' if e['parity_ok'] else 'FAILED'} (max rel diff {e['max_rel_diff']:.1e}, "
                  f"float64, <= {d['tolerance']:g}); {e['rows_per_s']:.0f} rows/s; exchange "
                  f"{e['exchange_s_per_step'] * 1e3:.2f} ms/step{inside}")
            if e.get("nccl_note"):
                print(f"  {name:9s}: NCCL not used: {e['nccl_note'][:300]}")
elif dask_backend:
    print("dask_gpu: no JSON (see dask_gpu.log)")
EOF
} >>"$summary" 2>&1

echo
echo "== summary ($outdir/summary.txt, ${SECONDS}s)"
cat "$summary"
# exit status: 0 only when every step succeeded
! grep -qE 'rc=([1-9]|[1-9][0-9]+) ' "$summary"
