// The JS class Engine: wraps mla::Engine; slow calls run on AsyncWorkers and return Promises.
#pragma once
#include <napi.h>

#include <memory>

#include "engine/engine.h"

namespace mla::napi {

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function defineClass(Napi::Env env);
  // Wraps an engine that a worker loaded (takes ownership).
  static Napi::Object wrap(Napi::Env env, std::unique_ptr<Engine> engine);

  explicit EngineWrap(const Napi::CallbackInfo& info);

  Engine& engine();
  void setBusy(bool busy) { busy_ = busy; }
  // Throws unless the engine is alive and no step runs (`what` names the call).
  void requireIdle(Napi::Env env, const char* what);

 private:
  Napi::Value config(const Napi::CallbackInfo& info);
  Napi::Value cacheInfo(const Napi::CallbackInfo& info);
  Napi::Value numFreeBlocks(const Napi::CallbackInfo& info);
  Napi::Value addSequence(const Napi::CallbackInfo& info);
  Napi::Value ensureCapacity(const Napi::CallbackInfo& info);
  Napi::Value freeSequence(const Napi::CallbackInfo& info);
  Napi::Value hasSequence(const Napi::CallbackInfo& info);
  Napi::Value numComputedTokens(const Napi::CallbackInfo& info);
  Napi::Value checkIntegrity(const Napi::CallbackInfo& info);
  Napi::Value step(const Napi::CallbackInfo& info);
  Napi::Value score(const Napi::CallbackInfo& info);
  Napi::Value scoreTop(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value statistics(const Napi::CallbackInfo& info);

  std::unique_ptr<Engine> engine_;
  bool busy_ = false;
};

// loadEngine(options) -> Promise<Engine>
Napi::Value loadEngine(const Napi::CallbackInfo& info);

}  // namespace mla::napi
