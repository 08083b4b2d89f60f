// Block bookkeeping: reference counts, prefix sharing, eviction, integrity.
#include <map>
#include <random>

#include "cache/block_manager.h"
#include "harness.h"

using namespace mla;

static std::vector<int32_t> tokens(int n, int seed) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[static_cast<size_t>(i)] = (i * 31 + seed) % 1000;
  return t;
}

TEST(allocate_grow_free) {
  BlockManager m(10, 64, false);
  auto t = tokens(100, 0);
  EXPECT(m.allocate(1, t.data(), 100).value() == 0);
  EXPECT(m.blockTable(1).size() == 2 && m.numFreeBlocks() == 8);
  EXPECT(m.ensureCapacity(1, 128) && m.blockTable(1).size() == 2);
  EXPECT(m.ensureCapacity(1, 129) && m.blockTable(1).size() == 3);
  EXPECT(!m.ensureCapacity(1, 64 * 11) && m.blockTable(1).size() == 3);  // no change on failure
  EXPECT(!m.allocate(2, t.data(), 64 * 8).has_value() && !m.hasSequence(2));
  m.free(1);
  EXPECT(m.numFreeBlocks() == 10);
  m.checkIntegrity();
  EXPECT_THROWS(m.free(1), "unknown sequence 1");
}

TEST(prefix_blocks_are_shared_after_they_are_computed) {
  BlockManager m(10, 64, true);
  auto t = tokens(200, 1);
  EXPECT(m.allocate(1, t.data(), 200).value() == 0);
  // Not computed yet: nothing to share.
  EXPECT(m.allocate(2, t.data(), 200).value() == 0);
  m.free(2);
  m.markComputed(1, t.data(), 200);
  EXPECT(m.allocate(3, t.data(), 200).value() == 192);
  EXPECT(m.blockTable(3)[0] == m.blockTable(1)[0] && m.blockTable(3)[2] == m.blockTable(1)[2]);
  EXPECT(m.blockTable(3)[3] != m.blockTable(1)[3]);
  // A different second block shares only the first.
  auto u = t;
  u[100] = 999;
  EXPECT(m.allocate(4, u.data(), 200).value() == 64);
  m.checkIntegrity();
  // Freed blocks keep their content for later reuse, until evicted by new allocations.
  m.free(1);
  m.free(3);
  m.free(4);
  EXPECT(m.allocate(5, t.data(), 150).value() == 128);
  m.free(5);
  auto other = tokens(64 * 10, 7);
  EXPECT(m.allocate(6, other.data(), 64 * 10).value() == 0);  // takes every block: evicts all
  m.free(6);
  EXPECT(m.allocate(7, t.data(), 150).value() == 0);
  m.free(7);
  m.checkIntegrity();
  EXPECT(m.numFreeBlocks() == 10);
}

TEST(randomized_operations_keep_integrity) {
  std::mt19937 rng(5);
  BlockManager m(32, 16, true);
  std::map<int64_t, int> live;  // id -> reserved tokens
  int64_t next = 1;
  for (int op = 0; op < 20000; ++op) {
    const int r = static_cast<int>(rng() % 100);
    if (r < 30 || live.empty()) {
      const int n = 1 + static_cast<int>(rng() % 80);
      auto t = tokens(n, static_cast<int>(rng() % 3));
      auto cached = m.allocate(next, t.data(), n);
      if (cached) {
        EXPECT(*cached < n && *cached % 16 == 0);
        m.markComputed(next, t.data() + *cached, n - *cached);
        live[next] = n;
      }
      ++next;
    } else {
      auto it = live.begin();
      std::advance(it, static_cast<long>(rng() % live.size()));
      if (r < 55) {
        if (m.ensureCapacity(it->first, it->second + 5)) {
          auto t = tokens(5, 9);
          m.markComputed(it->first, t.data(), 5);
          it->second += 5;
        }
      } else {
        m.free(it->first);
        live.erase(it);
      }
    }
    if (op % 100 == 0) m.checkIntegrity();
  }
  for (auto& [id, n] : live) m.free(id);
  m.checkIntegrity();
  EXPECT(m.numFreeBlocks() == 32);
}

RUN_TESTS()
