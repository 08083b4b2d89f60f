#include "cpu/isa.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "cpu/kernels/kernels.h"

namespace mla::cpu {

const char* isaName(Isa isa) {
  if (isa == Isa::kAvx512) return "avx512";
  if (isa == Isa::kAmx) return "amx";
#if defined(__AVX2__) && defined(__FMA__)
  return "avx2";
#else
  return "generic";
#endif
}

namespace {

#ifdef MLA_HAVE_AVX512_KERNELS
bool hasAvx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}

#ifdef MLA_HAVE_AMX_KERNELS
// Linux hands out AMX's 8 KB of tile state per process on request (arch_prctl
// ARCH_REQ_XCOMP_PERM for XTILEDATA); a tile instruction without it faults. Asked once.
bool tilesGranted() {
  static const bool granted = [] {
#if defined(__linux__)
    constexpr int kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
#else
    return false;
#endif
  }();
  return granted;
}

bool hasAmx() {
  __builtin_cpu_init();
  return hasAvx512() && __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("amx-tile") &&
         __builtin_cpu_supports("amx-bf16") && tilesGranted();
}
#else
bool hasAmx() { return false; }
#endif
#endif

}  // namespace

bool isaSupported(Isa isa) {
  if (isa == Isa::kBase) return true;
#ifdef MLA_HAVE_AVX512_KERNELS
  return isa == Isa::kAvx512 ? hasAvx512() : hasAmx();
#else
  return false;
#endif
}

Isa parseIsa(const char* name) {
  for (Isa isa : kAllIsas)
    if (std::strcmp(name, isaName(isa)) == 0) return isa;
  throw std::invalid_argument(std::string("unknown CPU ISA '") + name + "': choose " + isaName(Isa::kBase) + ", " +
                              isaName(Isa::kAvx512) + " or " + isaName(Isa::kAmx));
}

namespace {

Isa detect() {
  if (const char* forced = std::getenv("MLA_CPU_ISA"); forced && *forced) {
    const Isa isa = parseIsa(forced);
    if (!isaSupported(isa)) throw std::runtime_error(std::string("MLA_CPU_ISA=") + forced + ": this CPU or build lacks it");
    return isa;
  }
  for (Isa isa : {Isa::kAmx, Isa::kAvx512})
    if (isaSupported(isa)) return isa;
  return Isa::kBase;
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
#ifdef MLA_HAVE_AMX_KERNELS
  if (activeIsa() == Isa::kAmx) return isa_amx::kKernels;
#endif
#endif
  return isa_base::kKernels;
}

}  // namespace mla::cpu
