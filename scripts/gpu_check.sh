#!/usr/bin/env bash
# One prepared run on a GPU machine (about 6 minutes on a fresh H200; Node optional): build the
# native code with CUDA and cuBLAS, run every C++ GPU test, compute-sanitizer memcheck and racecheck
# on the kernel tests, a SASS summary of the MLA decode kernel, and the decode benchmark (quick
# sweep first). Every step has its own timeout and a failing step never stops the next one.
# At most 8 files go to $OUT (default build-gpu/out):
#   summary.txt  one line per step: status, seconds        env.txt     GPU, driver, nvcc, cuBLAS
#   build.log    configure and build, whole                 tests.txt   each test's whole output
#   sanitizer.txt  memcheck and racecheck                   sass.txt    resources and SASS counts
#   bench.txt    bench_mla_decode --quick, then the sweep    node.txt    the addon's GPU tests (if Node)
# Without a GPU it still writes every file, with "no device" lines, and exits 0.
# Usage: OUT=/some/dir MLA_CUDA_ARCHS=90 bash scripts/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${OUT:-$ROOT/build-gpu/out}
case "$OUT" in /*) ;; *) OUT="$ROOT/$OUT" ;; esac
mkdir -p "$OUT"
BUILD="$ROOT/build-gpu"
ARCHS=${MLA_CUDA_ARCHS:-90}
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
START=$(date +%s)

# step NAME SECONDS FILE COMMAND...: runs COMMAND with a timeout, appends its output to FILE under a
# header, and records "NAME: ok|FAIL (rc)|TIMEOUT, seconds" in the summary. Never exits the script.
step() {
  local name=$1 limit=$2 file=$3
  shift 3
  local t0 rc
  t0=$(date +%s)
  printf '\n===== %s (limit %ss) =====\n' "$name" "$limit" >>"$file"
  timeout --kill-after=10 "$limit" "$@" >>"$file" 2>&1
  rc=$?
  local status=ok
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status=TIMEOUT; elif [ $rc -eq 77 ]; then status=SKIP; elif [ $rc -ne 0 ]; then status="FAIL ($rc)"; fi
  printf '%-28s %-10s %4ss\n' "$name" "$status" "$(($(date +%s) - t0))" | tee -a "$SUMMARY"
  return 0
}

have_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }

# ---- environment ----
{
  echo "date: $(date -u +%FT%TZ)"
  echo "host: $(uname -a)"
  if have_gpu; then nvidia-smi; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv; else echo "no device: nvidia-smi finds no GPU"; fi
  command -v nvcc >/dev/null 2>&1 && nvcc --version || echo "no nvcc"
  python3 -c 'import nvidia, os; [print("pip nvidia:", p, sorted(os.listdir(p))) for p in nvidia.__path__]' 2>/dev/null || echo "no pip nvidia packages"
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>/dev/null || echo "no torch"
  command -v node >/dev/null 2>&1 && echo "node $(node --version)" || echo "no node"
  command -v compute-sanitizer >/dev/null 2>&1 && echo "compute-sanitizer: $(command -v compute-sanitizer)" || echo "no compute-sanitizer on PATH"
} >"$OUT/env.txt" 2>&1

# ---- build: the C++ tests and benchmarks only (no addon, no emulator) ----
step configure 120 "$OUT/build.log" cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DMLA_CUDA_ARCHS="$ARCHS" -DMLA_CUDA_EMULATION=OFF \
  ${MLA_CUBLAS_ROOT:+-DMLA_CUBLAS_ROOT="$MLA_CUBLAS_ROOT"}
grep -E "^-- mla:" "$OUT/build.log" >>"$OUT/env.txt"
step build 240 "$OUT/build.log" cmake --build "$BUILD" -j "$(nproc)"

# ---- tests: every GPU test executable, whole output each ----
for t in test_ptx test_cuda_kernels test_cuda_attention test_gpu_model; do
  if [ -x "$BUILD/$t" ]; then step "$t" 120 "$OUT/tests.txt" "$BUILD/$t"
  else echo "$t: not built (see build.log)" | tee -a "$OUT/tests.txt" >>"$SUMMARY"; fi
done
step ctest-cpu 120 "$OUT/tests.txt" ctest --test-dir "$BUILD" --output-on-failure -E "cuda|gpu|ptx"

# ---- compute-sanitizer on the kernel tests ----
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
if [ -n "$SAN" ] && have_gpu; then
  for tool in memcheck racecheck; do
    for t in test_ptx test_cuda_attention test_cuda_kernels; do
      [ -x "$BUILD/$t" ] && step "$tool $t" 150 "$OUT/sanitizer.txt" "$SAN" --tool "$tool" --error-exitcode 3 "$BUILD/$t"
    done
  done
else
  echo "no device or no compute-sanitizer: sanitizer runs skipped" | tee -a "$OUT/sanitizer.txt" >>"$SUMMARY"
fi

# ---- static evidence: resources and SASS instruction counts of the MLA decode kernels ----
sass_summary() {
  local lib="$BUILD/libmla_cuda_kernels.a"
  [ -f "$lib" ] || { echo "no $lib"; return 1; }
  echo "## resources (cuobjdump -res-usage), MLA kernels"
  cuobjdump -res-usage "$lib" 2>&1 | grep -A1 -E "Function .*[Mm]la" | grep -vE "^--$"
  echo
  echo "## SASS instruction counts per MLA kernel (cuobjdump -sass)"
  cuobjdump -sass "$lib" 2>/dev/null | awk '
    /Function :/ { if (name != "") report(); name = $3; delete n; next }
    /^ *\/\*[0-9a-f]+\*\// {
      for (k in pats) if ($0 ~ pats[k]) n[k]++
    }
    function report() { if (name ~ /[Mm]la/) { printf "%s\n ", name; for (k in pats) printf " %s=%d", k, n[k] + 0; printf "\n" } }
    BEGIN { pats["HMMA"] = "HMMA"; pats["HGMMA"] = "HGMMA"; pats["LDGSTS"] = "LDGSTS"; pats["UTMALDG"] = "UTMALDG"; pats["LDSM"] = "LDSM";
            pats["LDG.128"] = "LDG\\.E\\.128"; pats["LDL"] = "LDL"; pats["STL"] = "STL"; pats["BAR"] = "BAR\\.SYNC" }
    END { if (name != "") report() }'
}
if command -v cuobjdump >/dev/null 2>&1; then step sass 60 "$OUT/sass.txt" sass_summary
else echo "no cuobjdump: SASS summary skipped" | tee -a "$OUT/sass.txt" >>"$SUMMARY"; fi

# ---- the decode benchmark: the quick point first, then the sweep with what time is left ----
if [ -x "$BUILD/bench_mla_decode" ]; then
  step "bench quick" 60 "$OUT/bench.txt" "$BUILD/bench_mla_decode" --quick
  left=$((330 - ($(date +%s) - START)))
  if [ $left -gt 30 ]; then step "bench sweep" "$left" "$OUT/bench.txt" "$BUILD/bench_mla_decode"
  else echo "bench sweep: no time left ($left s)" | tee -a "$OUT/bench.txt" >>"$SUMMARY"; fi
else
  echo "bench_mla_decode: not built" | tee -a "$OUT/bench.txt" >>"$SUMMARY"
fi

# ---- the addon's GPU tests, where Node and node_modules are at hand ----
if command -v node >/dev/null 2>&1 && [ -d node_modules ] && have_gpu; then
  step "node gpu tests" 120 "$OUT/node.txt" bash -c "npx cmake-js compile --out build --CDMLA_CUDA_ARCHS='$ARCHS' >/dev/null && npx tsc -p tsconfig.json && node --test dist/test/gpu/"
else
  echo "no node, node_modules or device: the addon's GPU tests skipped" | tee -a "$OUT/node.txt" >>"$SUMMARY"
fi

echo "total $(($(date +%s) - START))s" >>"$SUMMARY"
exit 0
