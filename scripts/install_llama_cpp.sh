#!/usr/bin/env bash
# llama-cpp-python, the summarizer's CPU engine, builds llama.cpp from source (cmake + gcc): ~8 minutes on 2 cores
# the first time. The wheel is kept in ~/.cache/inference-gateway/wheels under a name that holds the CPU features
# it was built for, so later venvs (CI's fresh clones included) install it in seconds. Shows the build's progress.
#
# The features are read from /proc/cpuinfo instead of -march=native, and AMX is always off: a VM may list AMX in
# cpuinfo without the kernel granting its tile state, and llama.cpp's AMX kernels then die with SIGILL on the
# first batched prompt (seen on a Xeon VM here).
set -euo pipefail
PY=${1:?usage: install_llama_cpp.sh VENV_PYTHON}
VERSION=0.3.36
if "$PY" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$VERSION')" 2>/dev/null; then
  exit 0
fi
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { [[ " $flags " == *" $1 "* ]] && echo ON || echo OFF; }
args="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
args+=" -DGGML_AVX=$(has avx) -DGGML_AVX2=$(has avx2) -DGGML_FMA=$(has fma) -DGGML_F16C=$(has f16c)"
args+=" -DGGML_BMI2=$(has bmi2) -DGGML_AVX_VNNI=$(has avx_vnni) -DGGML_AVX512=$(has avx512f)"
args+=" -DGGML_AVX512_VBMI=$(has avx512vbmi) -DGGML_AVX512_VNNI=$(has avx512_vnni) -DGGML_AVX512_BF16=$(has avx512_bf16)"
key=$(echo "$VERSION $args" | sha256sum | cut -c1-12)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/inference-gateway/wheels/llama-cpp-python-$key"
if ! ls "$cache"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "llama-cpp-python $VERSION: building llama.cpp from source for this CPU (~8 min on 2 cores, once)"
  echo "  cmake: $args"
  mkdir -p "$cache.partial"
  CMAKE_ARGS="$args" "$PY" -m pip wheel -v --no-deps --no-cache-dir -w "$cache.partial" "llama-cpp-python==$VERSION" 2>&1 \
    | grep --line-buffered -E '^\s*\[[0-9]+/[0-9]+\]|Successfully|error:' \
    | sed -u -E 's/^\s*(\[[0-9]+\/[0-9]+\]).*/  llama.cpp build \1/'
  rm -rf "$cache" && mv "$cache.partial" "$cache"
fi
"$PY" -m pip install -q "$cache"/llama_cpp_python-*.whl
"$PY" -c "import llama_cpp; print('llama-cpp-python', llama_cpp.__version__, 'ready')"
