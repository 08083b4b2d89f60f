// Which instruction set the CPU kernels run with, chosen at run time (as llama.cpp does), so one
// build serves AVX2 and AVX-512 machines. The kernels (cpu/kernels/) are compiled once per ISA;
// everything else is compiled for the build's baseline (x86-64-v3, i.e. AVX2/FMA, unless
// MLA_NATIVE_ARCH is on).
#pragma once

// The AVX-512 variant needs GCC's `#pragma GCC target` on x86-64 (see kernels/kernels_avx512.cpp).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MLA_HAVE_AVX512_KERNELS 1
// The AMX variant: GCC 12 or later (its AMX intrinsics and __builtin_cpu_supports("amx-bf16")).
#if __GNUC__ >= 12
#define MLA_HAVE_AMX_KERNELS 1
#endif
#endif

namespace mla::cpu {

// kBase: the baseline build's instructions (AVX2/FMA on a portable x86 build).
// kAvx512: AVX-512 F/BW/VL/DQ, 16 floats a register and 32 registers.
// kAmx: kAvx512 plus AVX512-BF16 and AMX-BF16's tiles (Intel Sapphire Rapids and later), which
// multiply BF16 weights (cpu/kernels/amx_matmul.h); the OS must grant the process tile state.
enum class Isa { kBase, kAvx512, kAmx };
constexpr Isa kAllIsas[] = {Isa::kBase, Isa::kAvx512, Isa::kAmx};

const char* isaName(Isa isa);  // "avx2" (or "generic" off x86), "avx512", "amx"
bool isaSupported(Isa isa);    // compiled in, the CPU has it (and for kAmx, Linux granted the tiles)

// The ISA in use: the best supported one, or MLA_CPU_ISA from the environment ("avx2", "avx512", "amx";
// an unsupported or unknown name is an error at first use).
Isa activeIsa();
// Selects an ISA for the whole process (tests run every kernel under each); throws if unsupported.
void setActiveIsa(Isa isa);
// Parses a name as isaName prints it; throws std::invalid_argument naming the choices.
Isa parseIsa(const char* name);

}  // namespace mla::cpu
