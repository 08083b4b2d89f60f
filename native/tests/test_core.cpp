// JSON, dtypes, safetensors files and the thread pool.
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>

#include "core/dtype.h"
#include "core/huge_buffer.h"
#include "core/json.h"
#include "core/safetensors.h"
#include "core/thread_pool.h"
#include "harness.h"

using namespace mla;

TEST(json_values) {
  Json j = Json::parse(R"({"a": 1.5, "b": [true, false, null], "c": "x\"y\u00e9\ud83d\ude00", "d": {"e": -2e3}})");
  EXPECT(j.get("a").number() == 1.5);
  EXPECT(j.get("b").array().size() == 3 && j.get("b").array()[0].boolean() && j.get("b").array()[2].isNull());
  EXPECT(j.get("c").string() == "x\"y\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT(j.get("d").get("e").number() == -2000);
  EXPECT(std::isnan(Json::parse("NaN").number()) && Json::parse("-Infinity").number() < 0);
  EXPECT(!j.has("zz") && j.find("zz") == nullptr);
}

TEST(json_errors) {
  EXPECT_THROWS(Json::parse("{\"a\": }"), "invalid JSON at offset 6");
  EXPECT_THROWS(Json::parse("[1, 2"), "expected ']'");
  EXPECT_THROWS(Json::parse("\"abc"), "unterminated string");
  EXPECT_THROWS(Json::parse("{} x"), "trailing characters");
  EXPECT_THROWS(Json::parse(std::string(1000, '[')), "nesting too deep");
  EXPECT_THROWS(Json::parse("{}").get("k"), "missing JSON key 'k'");
}

TEST(dtype_conversions) {
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 10.0f);
  for (int i = 0; i < 10000; ++i) {
    const float f = normal(rng);
    const float b = bf16ToFloat(floatToBf16(f));
    EXPECT(std::fabs(b - f) <= std::fabs(f) * (1.0f / 256));
    const float h = f16ToFloat(floatToF16(f));
    EXPECT(std::fabs(h - f) <= std::fabs(f) * (1.0f / 2048) + 6e-8f);
  }
  EXPECT(floatToBf16(1.0f) == 0x3f80 && bf16ToFloat(0xc000) == -2.0f);
  EXPECT(floatToF16(1.0f) == 0x3c00 && f16ToFloat(0x3c00) == 1.0f && f16ToFloat(0x0001) == std::ldexp(1.0f, -24));
  EXPECT(floatToF16(1e6f) == 0x7c00 && std::isnan(f16ToFloat(floatToF16(NAN))));
  EXPECT(floatToBf16(1.00390625f) == 0x3f80);  // ties round to even
}

// Writes a safetensors file with the given header JSON and data bytes.
static std::string writeFile(const std::string& name, const std::string& header, const std::vector<unsigned char>& data) {
  const std::string path = "/tmp/mla_test_" + std::to_string(getpid()) + "_" + name;
  std::ofstream out(path, std::ios::binary);
  uint64_t n = header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header;
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  return path;
}

TEST(safetensors_reads_views) {
  std::vector<unsigned char> data(24);
  const float a[4] = {1, 2, 3, 4};
  std::memcpy(data.data(), a, 16);
  const uint16_t b[4] = {0x3f80, 0x4000, 0x4040, 0x4080};  // bf16 1, 2, 3, 4
  std::memcpy(data.data() + 16, b, 8);
  const std::string path = writeFile("ok.safetensors",
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"BF16","shape":[4],"data_offsets":[16,24]}})", data);
  for (FileAccess access : {FileAccess::kMapped, FileAccess::kResident}) {
    auto set = SafetensorsSet::open(path, access);
    const TensorView& tb = set->get("b");
    EXPECT(tb.dtype == DType::kBF16 && tb.numElements() == 4 && tb.shapeString() == "[4]");
    float out[4];
    toFloat(tb.dtype, tb.data, out, 4);
    EXPECT(out[0] == 1 && out[3] == 4);
    EXPECT(static_cast<const float*>(set->get("a").data)[2] == 3);
    EXPECT_THROWS(set->get("c"), "checkpoint has no tensor c");
  }
  // A resident copy is the file's bytes as they were read: rewriting the file changes nothing.
  auto resident = SafetensorsSet::open(path, FileAccess::kResident);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-24, std::ios::end);
    const float zero = 0;
    f.write(reinterpret_cast<const char*>(&zero), 4);
  }
  EXPECT(static_cast<const float*>(resident->get("a").data)[0] == 1);
  EXPECT(static_cast<const float*>(SafetensorsSet::open(path)->get("a").data)[0] == 0);
  std::remove(path.c_str());
}

TEST(huge_buffer_is_aligned_zeroed_and_movable) {
  HugeBuffer b(5u << 20);
  EXPECT(b.data() && b.size() == (5u << 20) && reinterpret_cast<uintptr_t>(b.data()) % (2u << 20) == 0);
  EXPECT(b.data()[0] == 0 && b.data()[b.size() - 1] == 0);
  b.data()[b.size() - 1] = 7;
  HugeBuffer moved = std::move(b);
  EXPECT(!b.data() && b.size() == 0 && moved.data()[moved.size() - 1] == 7);
  EXPECT(!HugeBuffer(0).data());
}

TEST(safetensors_rejects_bad_files) {
  std::vector<unsigned char> data(16);
  auto expectError = [&](const std::string& header, size_t bytes, const char* needle) {
    std::vector<unsigned char> d(data.begin(), data.begin() + static_cast<long>(bytes));
    const std::string path = writeFile("bad.safetensors", header, d);
    EXPECT_THROWS(SafetensorsSet::open(path), needle);
    EXPECT_THROWS(SafetensorsSet::open(path, FileAccess::kResident), needle);
    std::remove(path.c_str());
  };
  expectError(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8, "point outside the file");
  expectError(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", 16, "needs 12 bytes but data_offsets span 16");
  expectError(R"({"a":{"dtype":"I8","shape":[16],"data_offsets":[0,16]}})", 16, "unsupported dtype I8");
  expectError(R"({"a":{"dtype":"F32","shape":[4]}})", 16, "lacks dtype, shape or data_offsets");
  expectError(R"({"a":)", 16, "bad safetensors header");
  const char* path = "/tmp/mla_test_short.safetensors";
  std::ofstream(path) << "abc";
  EXPECT_THROWS(SafetensorsSet::open(path), "truncated safetensors file (3 bytes)");
  std::remove(path);
  EXPECT_THROWS(SafetensorsSet::open("/nonexistent/x.safetensors"), "no such checkpoint");
}

TEST(safetensors_sharded_index) {
  const std::string dir = "/tmp/mla_test_shards_" + std::to_string(getpid());
  (void)system(("mkdir -p " + dir).c_str());
  std::vector<unsigned char> data(8, 0);
  for (const char* shard : {"s1", "s2"}) {
    const std::string name = std::string(shard) == "s1" ? "x" : "y";
    const std::string tmp = writeFile(shard, "{\"" + name + "\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", data);
    (void)system(("mv " + tmp + " " + dir + "/" + shard + ".safetensors").c_str());
  }
  std::ofstream(dir + "/model.safetensors.index.json") << R"({"weight_map":{"x":"s1.safetensors","y":"s2.safetensors"}})";
  auto set = SafetensorsSet::open(dir);
  EXPECT(set->has("x") && set->has("y") && set->tensors().size() == 2);
  std::ofstream(dir + "/model.safetensors.index.json") << R"({"weight_map":{"x":"s1.safetensors","z":"s1.safetensors"}})";
  EXPECT_THROWS(SafetensorsSet::open(dir), "tensor z is not in s1.safetensors");
  (void)system(("rm -rf " + dir).c_str());
}

TEST(thread_pool_covers_every_index_once) {
  ThreadPool pool(4);
  for (int64_t n : {0, 1, 3, 4, 5, 1000, 12345}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    for (int repeat = 0; repeat < 20; ++repeat) {
      pool.parallelFor(n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
      });
    }
    bool all = true;
    for (auto& h : hits) all &= h.load() == 20;
    EXPECT_MSG(all, "n = %ld", static_cast<long>(n));
  }
}

RUN_TESTS()
