#include "napi/args.h"

#include <cmath>

namespace mla::napi {

void throwType(Napi::Env env, const std::string& message) { throw Napi::TypeError::New(env, message); }

Napi::Object objectArg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (info.Length() <= index || !info[index].IsObject()) throwType(info.Env(), std::string(name) + " must be an object");
  return info[index].As<Napi::Object>();
}

static int64_t toInt(Napi::Env env, Napi::Value v, const std::string& name) {
  if (!v.IsNumber()) throwType(env, name + " must be an integer");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9007199254740991.0) throwType(env, name + " must be an integer");
  return static_cast<int64_t>(d);
}

int64_t intArg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (info.Length() <= index) throwType(info.Env(), std::string(name) + " is required");
  return toInt(info.Env(), info[index], name);
}

int64_t intField(Napi::Object o, const char* name, int64_t fallback, bool required) {
  Napi::Value v = o.Get(name);
  if (v.IsUndefined() || v.IsNull()) {
    if (required) throwType(o.Env(), std::string(name) + " is required");
    return fallback;
  }
  return toInt(o.Env(), v, name);
}

double numberField(Napi::Object o, const char* name, double fallback) {
  Napi::Value v = o.Get(name);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsNumber() || !std::isfinite(v.As<Napi::Number>().DoubleValue())) throwType(o.Env(), std::string(name) + " must be a finite number");
  return v.As<Napi::Number>().DoubleValue();
}

bool boolField(Napi::Object o, const char* name, bool fallback) {
  Napi::Value v = o.Get(name);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsBoolean()) throwType(o.Env(), std::string(name) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string stringField(Napi::Object o, const char* name, const std::string& fallback) {
  Napi::Value v = o.Get(name);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsString()) throwType(o.Env(), std::string(name) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

template <typename T, napi_typedarray_type Kind>
static std::vector<T> copyTypedArray(Napi::Env env, Napi::Value v, const std::string& name, const char* typeName) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != Kind) throwType(env, name + " must be a " + typeName);
  auto a = v.As<Napi::TypedArrayOf<T>>();
  return std::vector<T>(a.Data(), a.Data() + a.ElementLength());
}

std::vector<int32_t> int32ArrayField(Napi::Object o, const char* name) {
  return copyTypedArray<int32_t, napi_int32_array>(o.Env(), o.Get(name), name, "Int32Array");
}

std::vector<uint8_t> uint8ArrayField(Napi::Object o, const char* name) {
  return copyTypedArray<uint8_t, napi_uint8_array>(o.Env(), o.Get(name), name, "Uint8Array");
}

std::vector<float> float32ArrayField(Napi::Object o, const char* name) {
  return copyTypedArray<float, napi_float32_array>(o.Env(), o.Get(name), name, "Float32Array");
}

std::vector<int32_t> int32ArrayArg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (info.Length() <= index) throwType(info.Env(), std::string(name) + " is required");
  return copyTypedArray<int32_t, napi_int32_array>(info.Env(), info[index], name, "Int32Array");
}

SamplingParams samplingParamsArg(const Napi::CallbackInfo& info, size_t index) {
  Napi::Object o = objectArg(info, index, "sampling params");
  Napi::Env env = info.Env();
  SamplingParams p;
  p.temperature = static_cast<float>(numberField(o, "temperature", 1.0));
  p.topP = static_cast<float>(numberField(o, "topP", 1.0));
  const int64_t topK = intField(o, "topK", 0);
  if (topK < 0 || topK > 2147483647) throwType(env, "topK must be within [0, 2147483647]");
  p.topK = static_cast<int>(topK);
  p.minP = static_cast<float>(numberField(o, "minP", 0.0));
  p.repetitionPenalty = static_cast<float>(numberField(o, "repetitionPenalty", 1.0));
  p.presencePenalty = static_cast<float>(numberField(o, "presencePenalty", 0.0));
  p.frequencyPenalty = static_cast<float>(numberField(o, "frequencyPenalty", 0.0));
  const int64_t seed = intField(o, "seed", 0);
  if (p.temperature < 0) throwType(env, "temperature must be >= 0");
  if (!(p.topP > 0 && p.topP <= 1)) throwType(env, "topP must be in (0, 1]");
  if (p.minP < 0 || p.minP > 1) throwType(env, "minP must be in [0, 1]");
  if (p.repetitionPenalty <= 0) throwType(env, "repetitionPenalty must be > 0");
  if (seed < 0) throwType(env, "seed must be >= 0");
  p.seed = static_cast<uint64_t>(seed);
  return p;
}

}  // namespace mla::napi
