#include "napi/statistics_wrap.h"

#include <climits>
#include <cstring>

#include "napi/args.h"
#include "napi/constructors.h"
#include "napi/engine_wrap.h"
#include "napi/workers.h"

namespace mla::napi {

namespace {

// [{layer, point, kind: "covariance" | "rmsFit" | "normalizedMoments", columns?: [begin, end], eps?, appendOne?}]
std::vector<StatRequest> requestsArg(const Napi::CallbackInfo& info, size_t index, int numLayers) {
  Napi::Env env = info.Env();
  if (info.Length() <= index || !info[index].IsArray()) throwType(env, "requests must be an array");
  auto list = info[index].As<Napi::Array>();
  std::vector<StatRequest> requests;
  for (uint32_t i = 0; i < list.Length(); ++i) {
    const std::string at = "requests[" + std::to_string(i) + "]";
    if (!list.Get(i).IsObject()) throwType(env, at + " must be an object");
    Napi::Object o = list.Get(i).As<Napi::Object>();
    StatRequest r;
    r.layer = static_cast<int>(intField(o, "layer", 0, true));
    if (r.layer < 0 || r.layer >= numLayers) throwType(env, at + ".layer is out of range");
    const std::string point = stringField(o, "point", "");
    if (!observePointNamed(point, r.point)) {
      throwType(env, at + ".point \"" + point + "\" is not an observation point (attn_norm, q, k, v, q_a, kv_a, attn_out, mlp_norm)");
    }
    const std::string kind = stringField(o, "kind", "covariance");
    if (kind == "covariance") r.kind = StatRequest::Kind::kCovariance;
    else if (kind == "rmsFit") r.kind = StatRequest::Kind::kRmsFit;
    else if (kind == "normalizedMoments") r.kind = StatRequest::Kind::kNormalizedMoments;
    else throwType(env, at + ".kind must be \"covariance\", \"rmsFit\" or \"normalizedMoments\"");
    r.eps = numberField(o, "eps", 1e-6);
    r.appendOne = boolField(o, "appendOne", false);
    Napi::Value cols = o.Get("columns");
    if (!cols.IsUndefined()) {
      if (!cols.IsArray() || cols.As<Napi::Array>().Length() != 2) throwType(env, at + ".columns must be [begin, end]");
      Napi::Array range = cols.As<Napi::Array>();
      const int64_t begin = toInt(env, range.Get(0u), at + ".columns[0]"), end = toInt(env, range.Get(1u), at + ".columns[1]");
      if (begin < 0 || begin >= end || end > INT32_MAX) throwType(env, at + ".columns must be [begin, end] with 0 <= begin < end");
      r.colBegin = static_cast<int>(begin);
      r.colEnd = static_cast<int>(end);
    }
    requests.push_back(r);
  }
  return requests;
}

}  // namespace

void StatisticsWrap::requireUsable(Napi::Env env, const char* what) const {
  if (failed_) throw Napi::Error::New(env, std::string(what) + ": a calibrate pass of these statistics failed, so they are partial; start a new session");
  if (!collector_) throw Napi::Error::New(env, std::string(what) + ": these statistics were taken already");
  if (running_) throw Napi::Error::New(env, std::string(what) + ": a calibrate pass of these statistics is still running; await it first");
}

Napi::Function StatisticsWrap::defineClass(Napi::Env env) {
  Napi::Function cls = DefineClass(env, "Statistics", {
      InstanceMethod("calibrate", &StatisticsWrap::calibrate),
      InstanceMethod("take", &StatisticsWrap::take),
  });
  constructors(env).statistics = Napi::Persistent(cls);
  return cls;
}

Napi::Object StatisticsWrap::create(const Napi::CallbackInfo& info, size_t index, const Engine& engine) {
  auto collector = std::make_unique<StatisticsCollector>(requestsArg(info, index, engine.config().numLayers), engine.options().numThreads);
  Napi::Object obj = constructors(info.Env()).statistics.New({info.This(), Napi::External<StatisticsCollector>::New(info.Env(), collector.get())});
  collector.release();  // now owned by the wrapper
  return obj;
}

StatisticsWrap::StatisticsWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<StatisticsWrap>(info) {
  if (info.Length() != 2 || !info[0].IsObject() || !info[1].IsExternal()) {
    throwType(info.Env(), "Statistics cannot be constructed directly: use engine.statistics(requests)");
  }
  engine_ = Napi::Persistent(info[0].As<Napi::Object>());
  collector_.reset(info[1].As<Napi::External<StatisticsCollector>>().Data());
}

// calibrate(batch, {lastLayer?, stopAtAttentionInput?}) -> Promise<void>: a forward pass feeding
// the session; by default it runs up to the last layer any request observes.
Napi::Value StatisticsWrap::calibrate(const Napi::CallbackInfo& info) {
  requireUsable(info.Env(), "calibrate");
  EngineWrap* engine = EngineWrap::Unwrap(engine_.Value());
  engine->requireIdle(info.Env(), "calibrate");
  StepInput input = stepInputArg(info, 0, false);
  const int numLayers = engine->engine().config().numLayers;
  int lastLayer = collector_->lastLayer();
  bool stopAtInput = false;
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Object o = info[1].As<Napi::Object>();
    lastLayer = static_cast<int>(intField(o, "lastLayer", lastLayer));
    stopAtInput = boolField(o, "stopAtAttentionInput", false);
  }
  if (lastLayer < 0 || lastLayer >= numLayers) throwType(info.Env(), "lastLayer is out of range");
  Napi::Value promise = CalibrateWorker::start(info.Env(), engine, engine_.Value(), info.This().As<Napi::Object>(), *collector_, std::move(input), lastLayer, stopAtInput);
  running_ = true;
  return promise;
}

// take() -> [{rows, columns, data: Float64Array}] in request order; ends the session.
Napi::Value StatisticsWrap::take(const Napi::CallbackInfo& info) {
  requireUsable(info.Env(), "take");
  Napi::Array out = Napi::Array::New(info.Env());
  uint32_t i = 0;
  for (StatResult& r : collector_->results()) {
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("rows", static_cast<double>(r.rows));
    o.Set("columns", r.columns);
    auto data = Napi::Float64Array::New(info.Env(), r.data.size());
    std::memcpy(data.Data(), r.data.data(), r.data.size() * sizeof(double));
    o.Set("data", data);
    out.Set(i++, o);
  }
  collector_.reset();
  return out;
}

}  // namespace mla::napi
