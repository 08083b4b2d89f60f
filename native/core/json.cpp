#include "core/json.h"

#include <cmath>
#include <cstdlib>

#include "core/error.h"

namespace mla {

class JsonParser {
 public:
  explicit JsonParser(const std::string& text) : s_(text) {}

  Json parseDocument() {
    Json value = parseValue(0);
    skipSpace();
    if (pos_ != s_.size()) fail("trailing characters");
    return value;
  }

 private:
  static constexpr int kMaxDepth = 256;
  const std::string& s_;
  size_t pos_ = 0;

  [[noreturn]] void fail(const std::string& what) {
    throw Error("invalid JSON at offset " + std::to_string(pos_) + ": " + what);
  }
  void skipSpace() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\r' || s_[pos_] == '\t')) ++pos_;
  }
  bool consume(char c) {
    skipSpace();
    if (pos_ < s_.size() && s_[pos_] == c) { ++pos_; return true; }
    return false;
  }
  void expectWord(const char* word) {
    for (const char* p = word; *p; ++p, ++pos_) {
      if (pos_ >= s_.size() || s_[pos_] != *p) fail(std::string("expected ") + word);
    }
  }

  Json parseValue(int depth) {
    if (depth > kMaxDepth) fail("nesting too deep");
    skipSpace();
    if (pos_ >= s_.size()) fail("unexpected end");
    Json v;
    char c = s_[pos_];
    if (c == '{') {
      ++pos_;
      v.kind_ = Json::Kind::kObject;
      if (consume('}')) return v;
      do {
        skipSpace();
        if (pos_ >= s_.size() || s_[pos_] != '"') fail("expected a string key");
        std::string key = parseString();
        if (!consume(':')) fail("expected ':'");
        v.object_[key] = parseValue(depth + 1);
      } while (consume(','));
      if (!consume('}')) fail("expected '}'");
    } else if (c == '[') {
      ++pos_;
      v.kind_ = Json::Kind::kArray;
      if (consume(']')) return v;
      do { v.array_.push_back(parseValue(depth + 1)); } while (consume(','));
      if (!consume(']')) fail("expected ']'");
    } else if (c == '"') {
      v.kind_ = Json::Kind::kString;
      v.string_ = parseString();
    } else if (c == 't') {
      expectWord("true"); v.kind_ = Json::Kind::kBool; v.bool_ = true;
    } else if (c == 'f') {
      expectWord("false"); v.kind_ = Json::Kind::kBool; v.bool_ = false;
    } else if (c == 'n') {
      expectWord("null");
    } else if (c == 'N' || c == 'I') {  // Python's json writes NaN and Infinity
      if (s_.compare(pos_, 3, "NaN") == 0) { pos_ += 3; v.number_ = NAN; }
      else { expectWord("Infinity"); v.number_ = INFINITY; }
      v.kind_ = Json::Kind::kNumber;
    } else {
      v.kind_ = Json::Kind::kNumber;
      v.number_ = parseNumber();
    }
    return v;
  }

  double parseNumber() {
    const char* begin = s_.c_str() + pos_;
    char* end = nullptr;
    if (*begin == '-' && s_.compare(pos_ + 1, 8, "Infinity") == 0) { pos_ += 9; return -INFINITY; }
    double d = std::strtod(begin, &end);
    if (end == begin) fail("unexpected character");
    pos_ += static_cast<size_t>(end - begin);
    return d;
  }

  static void appendUtf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) out += static_cast<char>(cp);
    else if (cp < 0x800) { out += static_cast<char>(0xC0 | (cp >> 6)); out += static_cast<char>(0x80 | (cp & 0x3F)); }
    else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12)); out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18)); out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)); out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  uint32_t parseHex4() {
    if (pos_ + 4 > s_.size()) fail("short \\u escape");
    uint32_t cp = 0;
    for (int i = 0; i < 4; ++i) {
      char h = s_[pos_++];
      cp <<= 4;
      if (h >= '0' && h <= '9') cp |= static_cast<uint32_t>(h - '0');
      else if (h >= 'a' && h <= 'f') cp |= static_cast<uint32_t>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') cp |= static_cast<uint32_t>(h - 'A' + 10);
      else fail("bad \\u escape");
    }
    return cp;
  }

  std::string parseString() {
    ++pos_;  // opening quote
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) fail("unterminated string");
      char c = s_[pos_++];
      if (c == '"') return out;
      if (c != '\\') { out += c; continue; }
      if (pos_ >= s_.size()) fail("unterminated escape");
      char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = parseHex4();
          if (cp >= 0xD800 && cp < 0xDC00 && s_.compare(pos_, 2, "\\u") == 0) {
            pos_ += 2;
            uint32_t low = parseHex4();
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          appendUtf8(out, cp);
          break;
        }
        default: fail("bad escape");
      }
    }
  }
};

Json Json::parse(const std::string& text) { return JsonParser(text).parseDocument(); }

double Json::number() const {
  check(kind_ == Kind::kNumber, "JSON value is not a number");
  return number_;
}
bool Json::boolean() const {
  check(kind_ == Kind::kBool, "JSON value is not a boolean");
  return bool_;
}
const std::string& Json::string() const {
  check(kind_ == Kind::kString, "JSON value is not a string");
  return string_;
}
const std::vector<Json>& Json::array() const {
  check(kind_ == Kind::kArray, "JSON value is not an array");
  return array_;
}
const std::map<std::string, Json>& Json::object() const {
  check(kind_ == Kind::kObject, "JSON value is not an object");
  return object_;
}
bool Json::has(const std::string& key) const { return find(key) != nullptr; }
const Json* Json::find(const std::string& key) const {
  if (kind_ != Kind::kObject) return nullptr;
  auto it = object_.find(key);
  return it == object_.end() ? nullptr : &it->second;
}
const Json& Json::get(const std::string& key) const {
  const Json* v = find(key);
  check(v != nullptr, "missing JSON key '" + key + "'");
  return *v;
}

}  // namespace mla
