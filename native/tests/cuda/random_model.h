// A DeepSeek-V3 (dense MLA) checkpoint with random bf16 weights at the shape the kernels are built
// for first (kv_lora_rank 512, qk_rope_head_dim 64), written to a temporary folder for tests that
// need a model no fixture has. Weights are scaled by 1/sqrt(fan-in), so activations and logits
// have a realistic spread.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace gpu {

struct RandomMlaShape {
  int hidden = 256, layers = 2, heads = 20, qLoraRank = 0, kvLoraRank = 512, nope = 32, rope = 64, vDim = 32, ffn = 384, vocab = 512;
};

// Writes config.json and model.safetensors; returns the folder.
inline std::string writeRandomMla(const RandomMlaShape& s, unsigned seed) {
  char pattern[] = "/tmp/mla-random-mla-XXXXXX";
  const char* made = mkdtemp(pattern);
  if (!made) throw std::runtime_error("mkdtemp failed");
  const std::string dir = made;
  std::mt19937 rng(seed);
  std::map<std::string, std::pair<std::vector<int>, std::vector<uint16_t>>> tensors;
  auto add = [&](const std::string& name, std::vector<int> shape, float scale, float offset = 0.0f) {
    size_t n = 1;
    for (int d : shape) n *= static_cast<size_t>(d);
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<uint16_t> bits(n);
    for (auto& b : bits) b = mla::floatToBf16(offset + dist(rng));
    tensors[name] = {shape, bits};
  };
  auto linear = [&](const std::string& name, int out, int in) { add(name, {out, in}, 1.0f / std::sqrt(static_cast<float>(in))); };
  const int qk = s.nope + s.rope;
  add("model.embed_tokens.weight", {s.vocab, s.hidden}, 1.0f);
  add("model.norm.weight", {s.hidden}, 0.05f, 1.0f);
  linear("lm_head.weight", s.vocab, s.hidden);
  for (int l = 0; l < s.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {s.hidden}, 0.05f, 1.0f);
    add(p + "post_attention_layernorm.weight", {s.hidden}, 0.05f, 1.0f);
    linear(p + "self_attn.q_proj.weight", s.heads * qk, s.hidden);
    linear(p + "self_attn.kv_a_proj_with_mqa.weight", s.kvLoraRank + s.rope, s.hidden);
    add(p + "self_attn.kv_a_layernorm.weight", {s.kvLoraRank}, 0.05f, 1.0f);
    linear(p + "self_attn.kv_b_proj.weight", s.heads * (s.nope + s.vDim), s.kvLoraRank);
    linear(p + "self_attn.o_proj.weight", s.hidden, s.heads * s.vDim);
    linear(p + "mlp.gate_proj.weight", s.ffn, s.hidden);
    linear(p + "mlp.up_proj.weight", s.ffn, s.hidden);
    linear(p + "mlp.down_proj.weight", s.hidden, s.ffn);
  }
  // safetensors: an 8-byte header length, the JSON header, then the data.
  std::string header = "{";
  size_t offset = 0;
  for (const auto& [name, t] : tensors) {
    std::string shape;
    for (int d : t.first) shape += (shape.empty() ? "" : ",") + std::to_string(d);
    const size_t bytes = t.second.size() * 2;
    header += (header.size() > 1 ? "," : "") + std::string("\"") + name + "\":{\"dtype\":\"BF16\",\"shape\":[" + shape + "],\"data_offsets\":[" +
              std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += "}";
  while (header.size() % 8) header += ' ';
  std::ofstream w(dir + "/model.safetensors", std::ios::binary);
  const uint64_t length = header.size();
  w.write(reinterpret_cast<const char*>(&length), 8);
  w << header;
  for (const auto& [name, t] : tensors) w.write(reinterpret_cast<const char*>(t.second.data()), static_cast<std::streamsize>(t.second.size() * 2));
  std::ofstream c(dir + "/config.json");
  c << "{\"architectures\":[\"DeepseekV3ForCausalLM\"],\"model_type\":\"deepseek_v3\",\"vocab_size\":" << s.vocab << ",\"hidden_size\":" << s.hidden
    << ",\"intermediate_size\":" << s.ffn << ",\"num_hidden_layers\":" << s.layers << ",\"num_attention_heads\":" << s.heads
    << ",\"num_key_value_heads\":" << s.heads << ",\"max_position_embeddings\":4096,\"rms_norm_eps\":1e-6,\"rope_theta\":10000,"
    << "\"tie_word_embeddings\":false,\"hidden_act\":\"silu\",\"q_lora_rank\":null,\"kv_lora_rank\":" << s.kvLoraRank
    << ",\"qk_nope_head_dim\":" << s.nope << ",\"qk_rope_head_dim\":" << s.rope << ",\"v_head_dim\":" << s.vDim
    << ",\"rope_interleave\":true,\"first_k_dense_replace\":" << s.layers << ",\"bos_token_id\":0,\"eos_token_id\":1}";
  return dir;
}

}  // namespace gpu
