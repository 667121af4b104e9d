#!/usr/bin/env bash
# Download the wheels scripts/gpu_check.sh installs on an offline CUDA machine.
#
#   scripts/fetch_gpu_wheels.sh DIR [--with-sklearn]
#
# The GPU image is assumed to have python 3.12 with numpy, cupy, torch and jax,
# but maybe not the pure-Python packages the library and its test suite need
# (array-api-compat, array-api-strict, tqdm, pytest, hypothesis and their
# dependencies) nor safetensors (an abi3 binary wheel, fetched for $PLATFORM).
# --with-sklearn also fetches scikit-learn, scipy and their dependencies
# (about 50 MB) for the digits problem and test_fit's digits test; without
# them those are skipped or reported as failed on the GPU machine.
#
# Versions are pinned to the ones the suite was tested with here. Override the
# interpreter with PYTHON=..., the target with PY_VERSION=3.12 and
# PLATFORM=manylinux_2_17_x86_64 (use manylinux_2_17_aarch64 for Grace/ARM hosts).
set -euo pipefail

usage() {
    echo "usage: $0 DIR [--with-sklearn]" >&2
    exit 2
}

[[ $# -ge 1 && $# -le 2 ]] || usage
dir=$1
with_sklearn=0
if [[ $# -eq 2 ]]; then
    [[ $2 == --with-sklearn ]] || usage
    with_sklearn=1
fi

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
