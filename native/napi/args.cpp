#include "napi/args.h"

#include <cmath>

namespace mla::napi {

void throwType(Napi::Env env, const std::string& message) { throw Napi::TypeError::New(env, message); }

Napi::Object objectArg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (info.Length() <= index || !info[index].IsObject()) throwType(info.Env(), std::string(name) + " must be an object");
  return info[index].As<Napi::Object>();
}

int64_t toInt(Napi::Env env, Napi::Value v, const std::string& name) {
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

namespace {
// The JS typed arrays a sampling field may travel in (the table names them).
struct Float32Array { using Value = float; static constexpr napi_typedarray_type kKind = napi_float32_array; };
struct Float64Array { using Value = double; static constexpr napi_typedarray_type kKind = napi_float64_array; };
struct Int32Array { using Value = int32_t; static constexpr napi_typedarray_type kKind = napi_int32_array; };

template <typename Array>
const typename Array::Value* samplingArray(Napi::Object fields, const char* field, const std::string& name, const char* typeName, size_t rows) {
  Napi::Value v = fields.Get(field);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != Array::kKind) throwType(fields.Env(), name + " must be a " + typeName);
  auto a = v.As<Napi::TypedArrayOf<typename Array::Value>>();
  if (a.ElementLength() != rows) throwType(fields.Env(), name + " must have one entry per sampled row (" + std::to_string(rows) + ")");
  return a.Data();
}
}  // namespace

std::vector<SamplingParams> samplingRowsField(Napi::Object o, const char* name, size_t rows) {
  Napi::Value v = o.Get(name);
  if (!v.IsObject()) throwType(o.Env(), "batch." + std::string(name) + " must be an object of typed arrays, one entry per sampled row");
  Napi::Object fields = v.As<Napi::Object>();
  std::vector<SamplingParams> out(rows);
#define MLA_READ_SAMPLING_FIELD(field, type, jsArray, fallback, valid, rule, doc)                          \
  {                                                                                                         \
    const std::string label = "batch." + std::string(name) + "." #field;                                    \
    const auto* values = samplingArray<jsArray>(fields, #field, label, #jsArray, rows);                     \
    for (size_t r = 0; r < rows; ++r) {                                                                     \
      const auto v = values[r];                                                                             \
      if (!(valid)) throwType(o.Env(), label + "[" + std::to_string(r) + "] must be " rule);              \
      out[r].field = static_cast<type>(v);                                                                  \
    }                                                                                                       \
  }
  MLA_SAMPLING_FIELDS(MLA_READ_SAMPLING_FIELD)
#undef MLA_READ_SAMPLING_FIELD
  return out;
}

}  // namespace mla::napi
