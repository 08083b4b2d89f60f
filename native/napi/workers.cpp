#include "napi/workers.h"

#include <algorithm>
#include <cstring>

#include "napi/args.h"
#include "napi/engine_wrap.h"
#include "napi/statistics_wrap.h"

namespace mla::napi {

StepInput stepInputArg(const Napi::CallbackInfo& info, size_t index, bool withSampling) {
  Napi::Object o = objectArg(info, index, "batch");
  StepInput in;
  const std::vector<int32_t> ids = int32ArrayField(o, "seqIds");
  in.seqIds.assign(ids.begin(), ids.end());
  in.startPositions = int32ArrayField(o, "startPositions");
  in.numTokens = int32ArrayField(o, "numTokens");
  in.tokenIds = int32ArrayField(o, "tokenIds");
  const size_t B = in.seqIds.size();
  if (B == 0) throwType(info.Env(), "batch.seqIds must not be empty");
  if (in.startPositions.size() != B) throwType(info.Env(), "batch.startPositions must have one entry per sequence");
  if (in.numTokens.size() != B) throwType(info.Env(), "batch.numTokens must have one entry per sequence");
  int64_t total = 0;
  for (int32_t n : in.numTokens) {
    if (n <= 0) throwType(info.Env(), "batch.numTokens entries must be positive");
    total += n;
  }
  if (total != static_cast<int64_t>(in.tokenIds.size())) throwType(info.Env(), "batch.tokenIds length must equal the sum of batch.numTokens");
  if (withSampling) {
    in.sampleMask = uint8ArrayField(o, "sampleMask");
    if (in.sampleMask.size() != B) throwType(info.Env(), "batch.sampleMask must have one entry per sequence");
    in.numTopLogprobs = static_cast<int>(intField(o, "numTopLogprobs", 0));
    if (in.numTopLogprobs < 0 || in.numTopLogprobs > 20) throwType(info.Env(), "batch.numTopLogprobs must be within [0, 20]");
    size_t rows = 0;
    for (uint8_t m : in.sampleMask) rows += m ? 1 : 0;
    in.sampling = samplingRowsField(o, "sampling", rows);
    // Logits processors: {rowIndex: Int32Array [R], words: Int32Array} and {offsets [R + 1], tokens, values}.
    if (Napi::Value masks = o.Get("logitMasks"); masks.IsObject()) {
      Napi::Object m = masks.As<Napi::Object>();
      in.maskRow = int32ArrayField(m, "rowIndex");
      const std::vector<int32_t> words = int32ArrayField(m, "words");
      in.maskWords.assign(words.begin(), words.end());
      if (in.maskRow.size() != rows) throwType(info.Env(), "batch.logitMasks.rowIndex must have one entry per sampled sequence");
    }
    if (Napi::Value bias = o.Get("logitBias"); bias.IsObject()) {
      Napi::Object b = bias.As<Napi::Object>();
      in.biasOffsets = int32ArrayField(b, "offsets");
      in.biasTokens = int32ArrayField(b, "tokens");
      in.biasValues = float32ArrayField(b, "values");
      if (in.biasOffsets.size() != rows + 1 || in.biasOffsets.front() != 0 || in.biasOffsets.back() != static_cast<int32_t>(in.biasTokens.size()) ||
          in.biasValues.size() != in.biasTokens.size()) {
        throwType(info.Env(), "batch.logitBias must have offsets [sampled rows + 1] over tokens and values of one length");
      }
      for (size_t r = 0; r + 1 < in.biasOffsets.size(); ++r) {
        if (in.biasOffsets[r] > in.biasOffsets[r + 1]) throwType(info.Env(), "batch.logitBias.offsets must not decrease");
      }
    }
  }
  return in;
}

// ---- loading ----

LoadWorker::LoadWorker(Napi::Env env, EngineOptions options)
    : Napi::AsyncWorker(env, "mla.load"), options_(std::move(options)), deferred_(Napi::Promise::Deferred::New(env)) {}

Napi::Value LoadWorker::start(Napi::Env env, EngineOptions options) {
  auto* w = new LoadWorker(env, std::move(options));
  Napi::Promise p = w->deferred_.Promise();
  w->Queue();
  return p;
}

void LoadWorker::Execute() {
  engine_ = Engine::create(options_);
}

void LoadWorker::OnOK() { deferred_.Resolve(EngineWrap::wrap(Env(), std::move(engine_))); }
void LoadWorker::OnError(const Napi::Error& e) { deferred_.Reject(e.Value()); }

// ---- steps ----

EngineWorker::EngineWorker(Napi::Env env, EngineWrap* wrap, Napi::Object self)
    : Napi::AsyncWorker(env, "mla.step"), wrap_(wrap), self_(Napi::Persistent(self)), deferred_(Napi::Promise::Deferred::New(env)) {
  wrap_->setBusy(true);
}

Napi::Value EngineWorker::queue(EngineWorker* w) {
  Napi::Promise p = w->deferred_.Promise();
  w->Queue();  // the worker deletes itself after OnOK / OnError
  return p;
}

void EngineWorker::finish() {
  wrap_->setBusy(false);
  self_.Reset();
}

void EngineWorker::OnError(const Napi::Error& e) {
  finish();
  deferred_.Reject(e.Value());
}

StepWorker::StepWorker(Napi::Env env, EngineWrap* wrap, Napi::Object self, StepInput input, bool returnLogits)
    : EngineWorker(env, wrap, self), input_(std::move(input)), returnLogits_(returnLogits) {}

Napi::Value StepWorker::start(Napi::Env env, EngineWrap* wrap, Napi::Object self, StepInput input, bool returnLogits) {
  return queue(new StepWorker(env, wrap, self, std::move(input), returnLogits));
}

void StepWorker::Execute() {
  results_ = wrap_->engine().step(input_, returnLogits_ ? &logits_ : nullptr);
}

void StepWorker::OnOK() {
  finish();
  Napi::Env env = Env();
  const size_t R = results_.size(), K = static_cast<size_t>(input_.numTopLogprobs);
  auto tokens = Napi::Int32Array::New(env, R);
  auto logprobs = Napi::Float32Array::New(env, R);
  auto topTokens = Napi::Int32Array::New(env, R * K);
  auto topLogprobs = Napi::Float32Array::New(env, R * K);
  for (size_t r = 0; r < R; ++r) {
    tokens[r] = results_[r].token;
    logprobs[r] = results_[r].logprob;
    for (size_t k = 0; k < K && k < results_[r].topTokens.size(); ++k) {
      topTokens[r * K + k] = results_[r].topTokens[k];
      topLogprobs[r * K + k] = results_[r].topLogprobs[k];
    }
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("tokenIds", tokens);
  out.Set("logprobs", logprobs);
  out.Set("topTokenIds", topTokens);
  out.Set("topLogprobs", topLogprobs);
  if (returnLogits_) {
    auto logits = Napi::Float32Array::New(env, logits_.size());
    std::memcpy(logits.Data(), logits_.data(), logits_.size() * sizeof(float));
    out.Set("logits", logits);
  }
  deferred_.Resolve(out);
}

ScoreWorker::ScoreWorker(Napi::Env env, EngineWrap* wrap, Napi::Object self, StepInput input, std::vector<int32_t> targets, int numTop)
    : EngineWorker(env, wrap, self), input_(std::move(input)), targets_(std::move(targets)), numTop_(numTop) {}

Napi::Value ScoreWorker::start(Napi::Env env, EngineWrap* wrap, Napi::Object self, StepInput input, std::vector<int32_t> targets, int numTop) {
  return queue(new ScoreWorker(env, wrap, self, std::move(input), std::move(targets), numTop));
}

void ScoreWorker::Execute() {
  scores_ = wrap_->engine().score(input_, targets_.data(), numTop_);
}

void ScoreWorker::OnOK() {
  finish();
  auto logprobs = Napi::Float32Array::New(Env(), scores_.logprobs.size());
  std::memcpy(logprobs.Data(), scores_.logprobs.data(), scores_.logprobs.size() * sizeof(float));
  if (numTop_ == 0) {
    deferred_.Resolve(logprobs);
    return;
  }
  auto ids = Napi::Int32Array::New(Env(), scores_.topIds.size());
  std::memcpy(ids.Data(), scores_.topIds.data(), scores_.topIds.size() * sizeof(int32_t));
  auto top = Napi::Float32Array::New(Env(), scores_.topLogprobs.size());
  std::memcpy(top.Data(), scores_.topLogprobs.data(), scores_.topLogprobs.size() * sizeof(float));
  Napi::Object o = Napi::Object::New(Env());
  o.Set("logprobs", logprobs);
  o.Set("topTokenIds", ids);
  o.Set("topLogprobs", top);
  deferred_.Resolve(o);
}

CalibrateWorker::CalibrateWorker(Napi::Env env, EngineWrap* wrap, Napi::Object self, Napi::Object session, StatisticsCollector& statistics,
                                 StepInput input, int lastLayer, bool stopAtInput)
    : EngineWorker(env, wrap, self), session_(Napi::Persistent(session)), statistics_(statistics), input_(std::move(input)),
      lastLayer_(lastLayer), stopAtInput_(stopAtInput) {}

Napi::Value CalibrateWorker::start(Napi::Env env, EngineWrap* wrap, Napi::Object self, Napi::Object session, StatisticsCollector& statistics,
                                   StepInput input, int lastLayer, bool stopAtInput) {
  return queue(new CalibrateWorker(env, wrap, self, session, statistics, std::move(input), lastLayer, stopAtInput));
}

void CalibrateWorker::Execute() {
  wrap_->engine().calibrate(input_, statistics_, lastLayer_, stopAtInput_);
}

void CalibrateWorker::release(bool failed) {
  StatisticsWrap::Unwrap(session_.Value())->passEnded(failed);
  session_.Reset();
}

void CalibrateWorker::OnOK() {
  finish();
  release(false);
  deferred_.Resolve(Env().Undefined());
}

void CalibrateWorker::OnError(const Napi::Error& e) {
  release(true);
  EngineWorker::OnError(e);
}

}  // namespace mla::napi
