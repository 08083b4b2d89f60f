#include "napi/engine_wrap.h"

#include <cstring>

#include "mla/config_fields.h"
#include "napi/args.h"
#include "napi/constructors.h"
#include "napi/statistics_wrap.h"
#include "napi/workers.h"

namespace mla::napi {

Napi::Function EngineWrap::defineClass(Napi::Env env) {
  Napi::Function cls = DefineClass(env, "Engine", {
      InstanceMethod("config", &EngineWrap::config),
      InstanceMethod("cacheInfo", &EngineWrap::cacheInfo),
      InstanceMethod("numFreeBlocks", &EngineWrap::numFreeBlocks),
      InstanceMethod("addSequence", &EngineWrap::addSequence),
      InstanceMethod("ensureCapacity", &EngineWrap::ensureCapacity),
      InstanceMethod("freeSequence", &EngineWrap::freeSequence),
      InstanceMethod("hasSequence", &EngineWrap::hasSequence),
      InstanceMethod("numComputedTokens", &EngineWrap::numComputedTokens),
      InstanceMethod("checkIntegrity", &EngineWrap::checkIntegrity),
      InstanceMethod("step", &EngineWrap::step),
      InstanceMethod("score", &EngineWrap::score),
      InstanceMethod("scoreTop", &EngineWrap::scoreTop),
      InstanceMethod("dispose", &EngineWrap::dispose),
      InstanceMethod("statistics", &EngineWrap::statistics),
  });
  constructors(env).engine = Napi::Persistent(cls);
  return cls;
}

Napi::Object EngineWrap::wrap(Napi::Env env, std::unique_ptr<Engine> engine) {
  Napi::Object obj = constructors(env).engine.New({Napi::External<Engine>::New(env, engine.get())});
  engine.release();  // now owned by the wrapper
  return obj;
}

EngineWrap::EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    throwType(info.Env(), "Engine cannot be constructed directly: use loadEngine(options)");
  }
  engine_.reset(info[0].As<Napi::External<Engine>>().Data());
}

Engine& EngineWrap::engine() { return *engine_; }

void EngineWrap::requireIdle(Napi::Env env, const char* what) {
  if (!engine_) throw Napi::Error::New(env, std::string(what) + ": the engine was disposed");
  if (busy_) throw Napi::Error::New(env, std::string(what) + ": the engine is busy with a step; wait for it to finish");
}

Napi::Value EngineWrap::config(const Napi::CallbackInfo& info) {
  // The config never changes, so it may be read while a step runs.
  if (!engine_) throw Napi::Error::New(info.Env(), "config: the engine was disposed");
  const ModelConfig& c = engine_->config();
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
#define MLA_SET_CONFIG_FIELD(name, tsType, value, doc) o.Set(#name, value);
  MLA_MODEL_CONFIG_FIELDS(MLA_SET_CONFIG_FIELD)
#undef MLA_SET_CONFIG_FIELD
  return o;
}

Napi::Value EngineWrap::cacheInfo(const Napi::CallbackInfo& info) {
  requireIdle(info.Env(), "cacheInfo");
  const BlockManager& b = engine_->blocks();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("numBlocks", b.numBlocks());
  o.Set("numFreeBlocks", b.numFreeBlocks());
  o.Set("blockSize", b.blockSize());
  o.Set("bytesPerBlock", static_cast<double>(engine_->bytesPerBlock()));
  o.Set("prefixHitTokens", static_cast<double>(b.prefixHitTokens()));
  o.Set("prefixQueryTokens", static_cast<double>(b.prefixQueryTokens()));
  o.Set("device", engine_->backend().name());
  return o;
}

Napi::Value EngineWrap::numFreeBlocks(const Napi::CallbackInfo& info) {
  requireIdle(info.Env(), "numFreeBlocks");
  return Napi::Number::New(info.Env(), engine_->blocks().numFreeBlocks());
}

// addSequence(seqId, tokens: Int32Array, numPromptTokens, usePrefixCache = true) -> cached token count | null
// (sampling parameters come with each step, per sampled row)
Napi::Value EngineWrap::addSequence(const Napi::CallbackInfo& info) {
  requireIdle(info.Env(), "addSequence");
  const int64_t id = intArg(info, 0, "seqId");
  const std::vector<int32_t> tokens = int32ArrayArg(info, 1, "tokens");
  const int64_t numPrompt = intArg(info, 2, "numPromptTokens");
  if (tokens.empty()) throwType(info.Env(), "tokens must not be empty");
  if (numPrompt < 0 || numPrompt > static_cast<int64_t>(tokens.size())) throwType(info.Env(), "numPromptTokens must be within [0, tokens.length]");
  bool usePrefixHits = true;
  if (info.Length() > 3 && !info[3].IsUndefined()) {
    if (!info[3].IsBoolean()) throwType(info.Env(), "usePrefixCache must be a boolean");
    usePrefixHits = info[3].As<Napi::Boolean>().Value();
  }
  auto cached = guarded(info.Env(), [&] {
    return engine_->addSequence(id, tokens.data(), static_cast<int>(tokens.size()), static_cast<int>(numPrompt), usePrefixHits);
  });
  return cached ? Napi::Number::New(info.Env(), *cached) : info.Env().Null();
}

Napi::Value EngineWrap::ensureCapacity(const Napi::CallbackInfo& info) {
  requireIdle(info.Env(), "ensureCapacity");
  const int64_t id = intArg(info, 0, "seqId"), n = intArg(info, 1, "numTokens");
  if (n < 0 || n > (1 << 30)) throwType(info.Env(), "numTokens out of range");
  return Napi::Boolean::New(info.Env(), guarded(info.Env(), [&] { return engine_->ensureCapacity(id, static_cast<int>(n)); }));
}

Napi::Value EngineWrap::freeSequence(const Napi::CallbackInfo& info) {
  requireIdle(info.Env(), "freeSequence");
  const int64_t id = intArg(info, 0, "seqId");
  guarded(info.Env(), [&] { engine_->freeSequence(id); return 0; });
  return info.Env().Undefined();
}

Napi::Value EngineWrap::hasSequence(const Napi::CallbackInfo& info) {
  requireIdle(info.Env(), "hasSequence");
  return Napi::Boolean::New(info.Env(), engine_->hasSequence(intArg(info, 0, "seqId")));
}

Napi::Value EngineWrap::numComputedTokens(const Napi::CallbackInfo& info) {
  requireIdle(info.Env(), "numComputedTokens");
  const int64_t id = intArg(info, 0, "seqId");
  return Napi::Number::New(info.Env(), guarded(info.Env(), [&] { return engine_->blocks().numComputedTokens(id); }));
}

Napi::Value EngineWrap::checkIntegrity(const Napi::CallbackInfo& info) {
  requireIdle(info.Env(), "checkIntegrity");
  guarded(info.Env(), [&] { engine_->blocks().checkIntegrity(); return 0; });
  return info.Env().Undefined();
}

Napi::Value EngineWrap::step(const Napi::CallbackInfo& info) {
  requireIdle(info.Env(), "step");
  StepInput input = stepInputArg(info, 0, true);
  const bool returnLogits = boolField(info[0].As<Napi::Object>(), "returnLogits", false);
  return StepWorker::start(info.Env(), this, info.This().As<Napi::Object>(), std::move(input), returnLogits);
}

Napi::Value EngineWrap::score(const Napi::CallbackInfo& info) {
  requireIdle(info.Env(), "score");
  StepInput input = stepInputArg(info, 0, false);
  std::vector<int32_t> targets = int32ArrayField(info[0].As<Napi::Object>(), "targetIds");
  if (targets.size() != input.tokenIds.size()) throwType(info.Env(), "targetIds must have one entry per token in tokenIds");
  return ScoreWorker::start(info.Env(), this, info.This().As<Napi::Object>(), std::move(input), std::move(targets), 0);
}

Napi::Value EngineWrap::scoreTop(const Napi::CallbackInfo& info) {
  requireIdle(info.Env(), "scoreTop");
  StepInput input = stepInputArg(info, 0, false);
  std::vector<int32_t> targets = int32ArrayField(info[0].As<Napi::Object>(), "targetIds");
  if (targets.size() != input.tokenIds.size()) throwType(info.Env(), "targetIds must have one entry per token in tokenIds");
  const int64_t k = intArg(info, 1, "numTopLogprobs");
  if (k < 1 || k > 20) throwType(info.Env(), "numTopLogprobs must be within [1, 20]");
  return ScoreWorker::start(info.Env(), this, info.This().As<Napi::Object>(), std::move(input), std::move(targets), static_cast<int>(k));
}

Napi::Value EngineWrap::dispose(const Napi::CallbackInfo& info) {
  requireIdle(info.Env(), "dispose");
  engine_.reset();
  return info.Env().Undefined();
}

// statistics(requests) -> Statistics: a calibration session of its own (napi/statistics_wrap.h).
Napi::Value EngineWrap::statistics(const Napi::CallbackInfo& info) {
  requireIdle(info.Env(), "statistics");
  return StatisticsWrap::create(info, 0, *engine_);
}

Napi::Value loadEngine(const Napi::CallbackInfo& info) {
  Napi::Object o = objectArg(info, 0, "options");
  EngineOptions opts;
  opts.modelDir = stringField(o, "modelDir", "");
  if (opts.modelDir.empty()) throwType(info.Env(), "options.modelDir is required");
  opts.device = stringField(o, "device", "cpu");
  opts.numThreads = static_cast<int>(intField(o, "numThreads", 0));
  opts.numBlocks = static_cast<int>(intField(o, "numBlocks", 0));
  opts.cacheBytes = intField(o, "cacheBytes", opts.cacheBytes);
  opts.gpuMemoryUtilization = numberField(o, "gpuMemoryUtilization", opts.gpuMemoryUtilization);
  if (!(opts.gpuMemoryUtilization > 0 && opts.gpuMemoryUtilization <= 1)) throwType(info.Env(), "options.gpuMemoryUtilization must be in (0, 1]");
  opts.enablePrefixCaching = boolField(o, "enablePrefixCaching", true);
  opts.poisonCache = boolField(o, "poisonCache", false);
  const std::string cacheDtype = stringField(o, "kvCacheDtype", "bf16");
  if (cacheDtype == "bf16") opts.cacheDtype = DType::kBF16;
  else if (cacheDtype == "f32") opts.cacheDtype = DType::kF32;
  else throwType(info.Env(), "options.kvCacheDtype must be \"bf16\" or \"f32\"");
  const std::string path = stringField(o, "mlaPath", "auto");
  if (path == "auto") opts.mlaPath = MlaPath::kAuto;
  else if (path == "absorbed") opts.mlaPath = MlaPath::kAbsorbed;
  else if (path == "expanded") opts.mlaPath = MlaPath::kExpanded;
  else throwType(info.Env(), "options.mlaPath must be \"auto\", \"absorbed\" or \"expanded\"");
  if (opts.numThreads < 0 || opts.numThreads > 1024) throwType(info.Env(), "options.numThreads must be within [0, 1024]");
  if (opts.numBlocks < 0) throwType(info.Env(), "options.numBlocks must be >= 0");
  if (opts.cacheBytes <= 0) throwType(info.Env(), "options.cacheBytes must be > 0");
  const int64_t maxTokens = intField(o, "maxNumBatchedTokens", opts.limits.maxTokens);
  const int64_t maxSeqs = intField(o, "maxNumSeqs", opts.limits.maxSeqs);
  const int64_t maxLen = intField(o, "maxModelLen", 0);
  if (maxTokens < 1 || maxTokens > (1 << 24)) throwType(info.Env(), "options.maxNumBatchedTokens must be within [1, 16777216]");
  if (maxSeqs < 1 || maxSeqs > (1 << 20)) throwType(info.Env(), "options.maxNumSeqs must be within [1, 1048576]");
  if (maxLen < 0 || maxLen > (1 << 26)) throwType(info.Env(), "options.maxModelLen must be within [0, 67108864]");
  opts.limits = {static_cast<int>(maxTokens), static_cast<int>(maxSeqs), static_cast<int>(maxLen)};
  return LoadWorker::start(info.Env(), std::move(opts));
}

}  // namespace mla::napi
