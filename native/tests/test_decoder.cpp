// The model definition (model/decoder.h) against a recording DecoderOps: the sequence of ops each
// architecture runs, where it stops early, what it observes, and the MLA plan's rule.
#include <string>
#include <vector>

#include "harness.h"
#include "model/decoder.h"

using namespace mla;

namespace {

// Records each op as a short line: "norm 0 input +", "linear 1 h: q k v", ...
class RecordingOps : public DecoderOps {
 public:
  bool hasQA = false, fits = true;
  std::vector<std::string> ops;
  MlaPlan plan;

  void beginStep(const ForwardBatch&, const MlaPlan& p) override { plan = p, ops.push_back("begin"); }
  bool expandedFits(int) const override { return fits; }
  bool hasMatrix(int, LayerMatrix m) const override { return m != LayerMatrix::kQA || hasQA; }
  bool hasNorm(int, LayerNorm) const override { return true; }
  void embed() override { ops.push_back("embed"); }
  void residualNorm(int l, LayerNorm n, bool addDelta) override {
    ops.push_back("norm " + std::to_string(l) + (n == LayerNorm::kInput ? " input" : " post") + (addDelta ? " +" : ""));
  }
  void linear(int l, Act in, std::initializer_list<Projection> outs) override {
    std::string s = "linear " + std::to_string(l) + " " + name(in) + ":";
    for (const Projection& p : outs) s += " " + name(p.out);
    ops.push_back(s);
  }
  void queryLatentNorm(int l) override { ops.push_back("qa norm " + std::to_string(l)); }
  void ropeCacheGqa(int l) override { ops.push_back("rope gqa " + std::to_string(l)); }
  void ropeCacheMla(int l) override { ops.push_back("rope mla " + std::to_string(l)); }
  void attentionGqa(int l) override { ops.push_back("attn gqa " + std::to_string(l)); }
  void attentionMla(int l) override { ops.push_back("attn mla " + std::to_string(l)); }
  void siluMul() override { ops.push_back("silu"); }
  void finalNorm() override { ops.push_back("final"); }
  void observe(int l, ObservePoint p, Act act, ActivationObserver&) override {
    ops.push_back("see " + std::to_string(l) + " " + observePointName(p) + "=" + name(act));
  }

  static std::string name(Act a) {
    static const char* names[] = {"x", "h", "delta", "q", "k", "v", "qa", "kva", "attn", "gate", "up", "ffn"};
    return names[static_cast<int>(a)];
  }
};

struct NullObserver : ActivationObserver {
  void observe(int, ObservePoint, const float*, int, int) override {}
};

ModelConfig config(AttentionKind kind, int layers) {
  ModelConfig c;
  c.attention = kind;
  c.numLayers = layers;
  c.numHeads = 4;
  c.kvLoraRank = 64;
  c.qkNopeHeadDim = 16;
  c.qkRopeHeadDim = 8;
  c.vHeadDim = 16;
  return c;
}

ForwardBatch batchOf(std::vector<SeqSlice> seqs) {
  ForwardBatch b;
  for (SeqSlice& s : seqs) s.tokenOffset = b.numTokens, b.numTokens += s.numTokens;
  b.seqs = std::move(seqs);
  return b;
}

std::vector<std::string> layerOps(int l, const std::vector<std::string>& attention) {
  const std::string L = std::to_string(l);
  std::vector<std::string> v = {"norm " + L + " input" + (l > 0 ? " +" : "")};
  v.insert(v.end(), attention.begin(), attention.end());
  for (const char* s : {"linear # attn: delta", "norm # post +", "linear # h: gate up", "silu", "linear # ffn: delta"}) {
    std::string op = s;
    if (op.find('#') != std::string::npos) op.replace(op.find('#'), 1, L);
    v.push_back(op);
  }
  return v;
}

}  // namespace

TEST(gqa_layers_run_projections_rope_attention_and_the_mlp_in_order) {
  RecordingOps ops;
  const ModelConfig c = config(AttentionKind::kGqa, 2);
  const ForwardBatch b = batchOf({{0, 3}});
  runDecoder(c, ops, b, ForwardOptions{});
  std::vector<std::string> want = {"begin", "embed"};
  for (int l = 0; l < 2; ++l) {
    const std::string L = std::to_string(l);
    const auto layer = layerOps(l, {"linear " + L + " h: q k v", "rope gqa " + L, "attn gqa " + L});
    want.insert(want.end(), layer.begin(), layer.end());
  }
  want.push_back("final");
  EXPECT(ops.ops == want);
  EXPECT(ops.plan.absorbed.empty());
}

TEST(mla_layers_with_a_compressed_query_norm_it_between_its_products) {
  RecordingOps ops;
  ops.hasQA = true;
  const ModelConfig c = config(AttentionKind::kMla, 1);
  runDecoder(c, ops, batchOf({{0, 2}}), ForwardOptions{});
  std::vector<std::string> want = {"begin", "embed"};
  const auto layer = layerOps(0, {"linear 0 h: qa", "qa norm 0", "linear 0 qa: q", "linear 0 h: kva", "rope mla 0", "attn mla 0"});
  want.insert(want.end(), layer.begin(), layer.end());
  want.push_back("final");
  EXPECT(ops.ops == want);
}

TEST(an_early_stop_computes_no_logits_and_observes_each_point) {
  RecordingOps ops;
  NullObserver observer;
  ForwardOptions o;
  o.observer = &observer;
  o.lastLayer = 1;
  o.stopAtAttentionInput = true;
  runDecoder(config(AttentionKind::kMla, 4), ops, batchOf({{0, 2}}), o);
  EXPECT(ops.ops.back() == "see 1 attn_norm=h");
  for (const std::string& op : ops.ops) EXPECT_MSG(op != "final", "logits after an early stop");
  const std::vector<std::string> seen = {"see 0 attn_norm=h", "see 0 q=q", "see 0 kv_a=kva", "see 0 attn_out=attn", "see 0 mlp_norm=h"};
  size_t next = 0;
  for (const std::string& op : ops.ops) if (next < seen.size() && op == seen[next]) ++next;
  EXPECT_MSG(next == seen.size(), "observation %zu of layer 0 missing or out of order", next);

  RecordingOps whole;
  o.lastLayer = 1;
  o.stopAtAttentionInput = false;
  runDecoder(config(AttentionKind::kGqa, 4), whole, batchOf({{0, 2}}), o);
  EXPECT(whole.ops.back() == "linear 1 ffn: delta");  // layers 0 and 1 whole, no final norm
}

TEST(the_mla_plan_is_absorbed_for_decode_and_where_the_expanded_form_does_not_fit) {
  const ModelConfig c = config(AttentionKind::kMla, 1);
  // A decode token, and a long prompt with no prefix (expanded is cheaper there).
  const ForwardBatch b = batchOf({{100, 1}, {0, 2000}});
  RecordingOps ops;
  MlaPlan plan = planMla(c, ops, b, MlaPath::kAuto);
  EXPECT(plan.absorbed.size() == 2 && plan.absorbed[0] == 1 && plan.absorbed[1] == 0);
  plan = planMla(c, ops, b, MlaPath::kAbsorbed);
  EXPECT(plan.absorbed[0] == 1 && plan.absorbed[1] == 1);
  plan = planMla(c, ops, b, MlaPath::kExpanded);
  EXPECT(plan.absorbed[0] == 0 && plan.absorbed[1] == 0);
  ops.fits = false;  // the expanded workspace holds no such context: absorbed whatever the rule says
  plan = planMla(c, ops, b, MlaPath::kExpanded);
  EXPECT(plan.absorbed[0] == 1 && plan.absorbed[1] == 1);
  EXPECT(planMla(config(AttentionKind::kGqa, 1), ops, b, MlaPath::kAuto).absorbed.empty());
}

RUN_TESTS()
