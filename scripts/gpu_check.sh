#!/usr/bin/env bash
# One call on a GPU machine: build the native code with CUDA and cuBLAS, run every C++ test (the
# GPU ones included) and the MLA decode benchmark; with Node present, also the addon's GPU tests.
# Works without Node (the C++ tests and benchmarks are plain executables). Results go to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build-gpu}
mkdir -p "$OUT"
ARCHS=${MLA_CUDA_ARCHS:-90}
# cuBLAS from the toolkit, or from Python's nvidia-cublas wheel.
CUBLAS_ROOT=${MLA_CUBLAS_ROOT:-$(python3 -c 'import nvidia.cublas as m; print(list(m.__path__)[0])' 2>/dev/null || true)}
echo "cuBLAS root: ${CUBLAS_ROOT:-(toolkit)}; architectures: $ARCHS"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DMLA_CUDA_ARCHS="$ARCHS" -DMLA_CUBLAS_ROOT="$CUBLAS_ROOT" 2>&1 | tail -5
cmake --build build-gpu -j "$(nproc)" 2>&1 | tail -3
(cd build-gpu && ctest --output-on-failure 2>&1 | tee "$OLDPWD/$OUT/ctest.txt")
./build-gpu/bench_mla_decode | tee "$OUT/bench_mla_decode.txt"
if command -v node >/dev/null 2>&1 && [ -d node_modules ]; then
  npx cmake-js compile --out build --CDMLA_CUDA_ARCHS="$ARCHS" --CDMLA_CUBLAS_ROOT="$CUBLAS_ROOT" >/dev/null
  npx tsc -p tsconfig.json && node --test dist/test/gpu/ 2>&1 | tee "$OUT/node-gpu-tests.txt"
fi
