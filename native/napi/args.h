// Argument readers for the N-API boundary: every failure is a TypeError that names the argument.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mla/sampling_fields.h"

namespace mla::napi {

[[noreturn]] void throwType(Napi::Env env, const std::string& message);

Napi::Object objectArg(const Napi::CallbackInfo& info, size_t index, const char* name);
// v as an integer (a TypeError naming `name` when it is not one).
int64_t toInt(Napi::Env env, Napi::Value v, const std::string& name);
int64_t intArg(const Napi::CallbackInfo& info, size_t index, const char* name);
int64_t intField(Napi::Object o, const char* name, int64_t fallback, bool required = false);
double numberField(Napi::Object o, const char* name, double fallback);
bool boolField(Napi::Object o, const char* name, bool fallback);
std::string stringField(Napi::Object o, const char* name, const std::string& fallback);

// Copies a typed array field (Int32Array / Uint8Array) into a vector.
std::vector<int32_t> int32ArrayField(Napi::Object o, const char* name);
std::vector<uint8_t> uint8ArrayField(Napi::Object o, const char* name);
std::vector<float> float32ArrayField(Napi::Object o, const char* name);
std::vector<int32_t> int32ArrayArg(const Napi::CallbackInfo& info, size_t index, const char* name);

// Reads o[name] = {field: typed array [rows], ...}, one array per row of MLA_SAMPLING_FIELDS
// (mla/sampling_fields.h), every value checked against its row's rule.
std::vector<SamplingParams> samplingRowsField(Napi::Object o, const char* name, size_t rows);

}  // namespace mla::napi
