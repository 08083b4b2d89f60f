#include "cpu/isa.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cpu/kernels/kernels.h"

namespace mla::cpu {

const char* isaName(Isa isa) {
  if (isa == Isa::kAvx512) return "avx512";
#if defined(__AVX2__) && defined(__FMA__)
  return "avx2";
#else
  return "generic";
#endif
}

bool isaSupported(Isa isa) {
  if (isa == Isa::kBase) return true;
#ifdef MLA_HAVE_AVX512_KERNELS
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#else
  return false;
#endif
}

Isa parseIsa(const char* name) {
  for (Isa isa : {Isa::kBase, Isa::kAvx512})
    if (std::strcmp(name, isaName(isa)) == 0) return isa;
  throw std::invalid_argument(std::string("unknown CPU ISA '") + name + "': choose " + isaName(Isa::kBase) + " or " +
                              isaName(Isa::kAvx512));
}

namespace {

Isa detect() {
  if (const char* forced = std::getenv("MLA_CPU_ISA"); forced && *forced) {
    const Isa isa = parseIsa(forced);
    if (!isaSupported(isa)) throw std::runtime_error(std::string("MLA_CPU_ISA=") + forced + ": this CPU or build lacks it");
    return isa;
  }
  return isaSupported(Isa::kAvx512) ? Isa::kAvx512 : Isa::kBase;
}

std::atomic<int>& selected() {
  static std::atomic<int> isa{static_cast<int>(detect())};
  return isa;
}

}  // namespace

Isa activeIsa() { return static_cast<Isa>(selected().load(std::memory_order_relaxed)); }

void setActiveIsa(Isa isa) {
  if (!isaSupported(isa)) throw std::runtime_error(std::string("CPU ISA ") + isaName(isa) + " is not supported here");
  selected().store(static_cast<int>(isa), std::memory_order_relaxed);
}

const KernelTable& kernels() {
#ifdef MLA_HAVE_AVX512_KERNELS
  if (activeIsa() == Isa::kAvx512) return isa_avx512::kKernels;
#endif
  return isa_base::kKernels;
}

}  // namespace mla::cpu
