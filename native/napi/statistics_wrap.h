// The JS class Statistics: one calibration session of the converter over an engine, created by
// engine.statistics(requests). calibrate(batch, options) feeds it forward passes (no logits);
// take() returns the accumulated results and ends the session. The serving engine keeps no
// calibration state: each session owns its collector.
#pragma once
#include <napi.h>

#include <memory>

#include "engine/statistics.h"

namespace mla::napi {

class StatisticsWrap : public Napi::ObjectWrap<StatisticsWrap> {
 public:
  static Napi::Function defineClass(Napi::Env env);
  // A session over `engine` (an Engine object) reading requests (the JS array at info[index]).
  static Napi::Object create(const Napi::CallbackInfo& info, size_t index, int numLayers);

  explicit StatisticsWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value calibrate(const Napi::CallbackInfo& info);
  Napi::Value take(const Napi::CallbackInfo& info);

  Napi::ObjectReference engine_;                    // the Engine object: alive while the session is
  std::unique_ptr<StatisticsCollector> collector_;  // null once taken
};

}  // namespace mla::napi
