// AsyncWorkers: model loading and steps run off the JS thread and settle a Promise.
#pragma once
#include <napi.h>

#include <exception>
#include <vector>

#include "engine/engine.h"
#include "engine/statistics.h"

namespace mla::napi {

class EngineWrap;

// Runs fn, turning a native exception into a JS Error (synchronous calls).
template <typename Fn>
auto guarded(Napi::Env env, Fn fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

// Reads {seqIds, startPositions, numTokens, tokenIds} and, withSampling, {sampleMask, sampling,
// numTopLogprobs?, logitMasks?, logitBias?} (typed arrays).
StepInput stepInputArg(const Napi::CallbackInfo& info, size_t index, bool withSampling);

class LoadWorker : public Napi::AsyncWorker {
 public:
  static Napi::Value start(Napi::Env env, EngineOptions options);
  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error& e) override;

 private:
  LoadWorker(Napi::Env env, EngineOptions options);
  EngineOptions options_;
  std::unique_ptr<Engine> engine_;
  Napi::Promise::Deferred deferred_;
};

// Base for workers that run on a loaded engine: marks it busy and keeps the JS object alive.
// Execute() may throw: node-addon-api (built with NAPI_CPP_EXCEPTIONS) turns that into OnError.
class EngineWorker : public Napi::AsyncWorker {
 protected:
  EngineWorker(Napi::Env env, EngineWrap* wrap, Napi::Object self);
  // Queues a new worker and returns the promise it settles.
  static Napi::Value queue(EngineWorker* w);
  void OnError(const Napi::Error& e) override;
  void finish();
  EngineWrap* wrap_;
  Napi::ObjectReference self_;
  Napi::Promise::Deferred deferred_;
};

class StepWorker : public EngineWorker {
 public:
  static Napi::Value start(Napi::Env env, EngineWrap* wrap, Napi::Object self, StepInput input, bool returnLogits);
  void Execute() override;
  void OnOK() override;

 private:
  StepWorker(Napi::Env env, EngineWrap* wrap, Napi::Object self, StepInput input, bool returnLogits);
  StepInput input_;
  bool returnLogits_;
  std::vector<SampleResult> results_;
  std::vector<float> logits_;
};

class ScoreWorker : public EngineWorker {
 public:
  // numTop 0: resolves the target log-probs (Float32Array); else {logprobs, topTokenIds, topLogprobs}.
  static Napi::Value start(Napi::Env env, EngineWrap* wrap, Napi::Object self, StepInput input, std::vector<int32_t> targets, int numTop);
  void Execute() override;
  void OnOK() override;

 private:
  ScoreWorker(Napi::Env env, EngineWrap* wrap, Napi::Object self, StepInput input, std::vector<int32_t> targets, int numTop);
  StepInput input_;
  std::vector<int32_t> targets_;
  int numTop_;
  Engine::Scores scores_;
};

class CalibrateWorker : public EngineWorker {
 public:
  // Runs input through the engine for `statistics` (owned by the Statistics object `session`, kept alive meanwhile).
  static Napi::Value start(Napi::Env env, EngineWrap* wrap, Napi::Object self, Napi::Object session, StatisticsCollector& statistics,
                           StepInput input, int lastLayer, bool stopAtInput);
  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error& e) override;

 private:
  CalibrateWorker(Napi::Env env, EngineWrap* wrap, Napi::Object self, Napi::Object session, StatisticsCollector& statistics,
                  StepInput input, int lastLayer, bool stopAtInput);
  void release(bool failed);  // the session is idle again (partial after a failure) and may be collected
  Napi::ObjectReference session_;
  StatisticsCollector& statistics_;
  StepInput input_;
  int lastLayer_;
  bool stopAtInput_;
};

}  // namespace mla::napi
