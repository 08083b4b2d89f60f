// The JS class Statistics: one calibration session of the converter over an engine, created by
// engine.statistics(requests). calibrate(batch, options) feeds it forward passes (no logits);
// take() returns the accumulated results and ends the session. The serving engine keeps no
// calibration state: each session owns its collector.
#pragma once
#include <napi.h>

#include <memory>

#include "engine/engine.h"
#include "engine/statistics.h"

namespace mla::napi {

class StatisticsWrap : public Napi::ObjectWrap<StatisticsWrap> {
 public:
  static Napi::Function defineClass(Napi::Env env);
  // A session over `engine` (info.This(), an Engine object) reading requests (the JS array at
  // info[index]); its reductions run on as many threads as the engine's.
  static Napi::Object create(const Napi::CallbackInfo& info, size_t index, const Engine& engine);

  explicit StatisticsWrap(const Napi::CallbackInfo& info);
  // A calibrate pass settled (CalibrateWorker): the session is idle again; after a failed pass its
  // sums are partial, so it refuses more passes and take().
  void passEnded(bool failed) {
    running_ = false;
    if (failed) {
      collector_.reset();
      failed_ = true;
    }
  }

 private:
  void requireUsable(Napi::Env env, const char* what) const;  // throws once taken or failed, or while a pass runs
  Napi::Value calibrate(const Napi::CallbackInfo& info);
  Napi::Value take(const Napi::CallbackInfo& info);

  Napi::ObjectReference engine_;                    // the Engine object: alive while the session is
  std::unique_ptr<StatisticsCollector> collector_;  // null once taken
  bool running_ = false;  // a calibrate pass is writing the collector
  bool failed_ = false;   // a pass failed: the collector was dropped
};

}  // namespace mla::napi
