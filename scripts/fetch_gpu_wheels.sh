#!/usr/bin/env bash
# Download the wheels scripts/gpu_check.sh installs on an offline CUDA machine.
#
#   scripts/fetch_gpu_wheels.sh DIR [--with-sklearn] [--with-dask]
#
# The GPU image is assumed to have python 3.12 with numpy, cupy, torch and jax,
# but maybe not the pure-Python packages the library and its test suite need
# (array-api-compat, array-api-strict, tqdm, pytest, hypothesis and their
# dependencies) nor safetensors (an abi3 binary wheel, fetched for $PLATFORM).
# --with-sklearn also fetches scikit-learn, scipy and their dependencies
# (about 50 MB) for the digits problem and test_fit's digits test; without
# them those are skipped or reported as failed on the GPU machine.
# --with-dask also fetches dask, distributed and their dependencies (about
# 5 MB; pure-Python wheels, and binary ones for $PLATFORM: pyyaml, msgpack,
# markupsafe, psutil, tornado) for gpu_check.sh's dask_gpu step
# (scripts/dask_gpu_check.py: fit(client=) on CuPy workers); without them the
# step is skipped with a note. dask-cuda is not fetched (its dependencies,
# numba, pandas and rapids-dask-dependency's pins, are large and tied to one
# dask): where the image has it the check uses LocalCUDACluster, else a
# LocalCluster whose workers share the GPU.
#
# Versions are pinned to the ones the suite was tested with here. Override the
# interpreter with PYTHON=..., the target with PY_VERSION=3.12 and
# PLATFORM=manylinux_2_17_x86_64 (use manylinux_2_17_aarch64 for Grace/ARM hosts).
set -euo pipefail

# usage [WHY]: the usage line, then (as argparse does) one "error:" line saying what was wrong; exit 2
usage() {
    echo "usage: $0 DIR [--with-sklearn] [--with-dask]" >&2
    [[ $# -eq 0 ]] || echo "$0: error: $1" >&2
    exit 2
}

if [[ ${1-} == -h || ${1-} == --help ]]; then
    echo "usage: $0 DIR [--with-sklearn] [--with-dask]"
    exit 0
fi
[[ $# -ge 1 ]] || usage "the folder DIR is required"
dir=$1
[[ $dir != -* ]] || usage "unrecognized argument: $dir (DIR comes first)"
shift
with_sklearn=0
with_dask=0
for opt in "$@"; do
    case $opt in
        --with-sklearn) with_sklearn=1 ;;
        --with-dask) with_dask=1 ;;
        *) usage "unrecognized argument: $opt" ;;
    esac
done

python=${PYTHON:-python3}
py_version=${PY_VERSION:-3.12}
platform=${PLATFORM:-manylinux_2_17_x86_64}

# Pure-Python wheels (py3-none-any), the library's and the test suite's ...
wanted=(
    array-api-compat==1.16.0
    array-api-strict==2.6.1
    tqdm==4.70.1
    pytest==9.2.0
    pluggy==1.7.0
    iniconfig==2.3.1
    packaging==26.4
    pygments==2.21.0
    sortedcontainers==2.4.0
    # ... and binary ones, for $platform: hypothesis ships compiled cp312 wheels
    # (it falls back to its py3 wheel where none matches), safetensors an abi3 one.
    hypothesis==6.170.17
    safetensors==0.8.0
)
if [[ $with_sklearn -eq 1 ]]; then
    wanted+=(scikit-learn==1.9.1 scipy==1.17.1 joblib==1.6.0 threadpoolctl==3.8.0 narwhals==2.29.0)
fi
if [[ $with_dask -eq 1 ]]; then
    # dask[array] needs numpy (the image's); tornado 6.6 and psutil 7.2 have no manylinux_2_17 wheels
    wanted+=(
        dask==2026.8.0 distributed==2026.8.0 click==8.5.1 cloudpickle==3.1.3 fsspec==2026.9.0 partd==1.4.2
        locket==1.0.0 toolz==1.2.0 tblib==3.2.2 zict==3.0.0 jinja2==3.1.6
        pyyaml==6.0.4 msgpack==1.2.4 markupsafe==3.0.4 psutil==7.1.1 tornado==6.5.4
    )
fi

mkdir -p "$dir"
"$python" -m pip download --no-deps --only-binary=:all: --dest "$dir" \
    --python-version "$py_version" --implementation cp --platform "$platform" "${wanted[@]}"

# Every wheel must be installable offline on the target: check the tags now.
bad=0
for whl in "$dir"/*.whl; do
    case $(basename "$whl") in
        *-py3-none-any.whl | *-py2.py3-none-any.whl | *-cp3*-abi3-*.whl) ;;
        *-cp${py_version/./}-cp${py_version/./}-*.whl) ;;
        *)
            echo "warning: $(basename "$whl") may not install on Python $py_version" >&2
            bad=1
            ;;
    esac
done
echo "wheels for Python $py_version ($platform) in $dir:"
ls -1 "$dir"
du -sh "$dir"
exit "$bad"
