// A minimal test harness for ctest: TEST(name) { EXPECT(...); }, then RUN_TESTS() in main.
#pragma once
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace harness {

struct Case {
  const char* name;
  std::function<void()> fn;
};
inline std::vector<Case>& cases() {
  static std::vector<Case> all;
  return all;
}
inline int& failures() {
  static int n = 0;
  return n;
}
struct Registrar {
  Registrar(const char* name, std::function<void()> fn) { cases().push_back({name, std::move(fn)}); }
};

inline int runAll() {
  int passed = 0, failed = 0;
  for (const Case& c : cases()) {
    const int before = failures();
    try {
      c.fn();
    } catch (const std::exception& e) {
      std::printf("  unexpected exception: %s\n", e.what());
      ++failures();
    }
    const bool ok = failures() == before;
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", c.name);
    (ok ? passed : failed)++;
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

}  // namespace harness

#define TEST(name)                                                       \
  static void name();                                                    \
  static harness::Registrar registrar_##name(#name, name);               \
  static void name()

#define EXPECT(cond)                                                                 \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::printf("  %s:%d: expected %s\n", __FILE__, __LINE__, #cond);              \
      ++harness::failures();                                                         \
    }                                                                                \
  } while (0)

#define EXPECT_MSG(cond, ...)                                                        \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::printf("  %s:%d: expected %s: ", __FILE__, __LINE__, #cond);              \
      std::printf(__VA_ARGS__);                                                      \
      std::printf("\n");                                                             \
      ++harness::failures();                                                         \
    }                                                                                \
  } while (0)

// Expects `stmt` to throw an exception whose message contains `needle`.
#define EXPECT_THROWS(stmt, needle)                                                              \
  do {                                                                                           \
    bool threw_ = false;                                                                         \
    try {                                                                                        \
      stmt;                                                                                      \
    } catch (const std::exception& e_) {                                                         \
      threw_ = true;                                                                             \
      if (std::string(e_.what()).find(needle) == std::string::npos) {                            \
        std::printf("  %s:%d: message \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, e_.what(), needle); \
        ++harness::failures();                                                                   \
      }                                                                                          \
    }                                                                                            \
    if (!threw_) {                                                                               \
      std::printf("  %s:%d: %s did not throw\n", __FILE__, __LINE__, #stmt);                    \
      ++harness::failures();                                                                     \
    }                                                                                            \
  } while (0)

#define RUN_TESTS() \
  int main() { return harness::runAll(); }
