// The addon's JS classes, kept per environment (Node's instance data) so natives can create them.
#pragma once
#include <napi.h>

namespace mla::napi {

struct Constructors {
  Napi::FunctionReference engine;      // Engine (engine_wrap.h)
  Napi::FunctionReference statistics;  // Statistics (statistics_wrap.h)
};

inline Constructors& constructors(Napi::Env env) { return *env.GetInstanceData<Constructors>(); }

}  // namespace mla::napi
