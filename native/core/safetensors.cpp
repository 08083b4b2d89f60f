#include "core/safetensors.h"

#include <algorithm>
#include <cmath>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/json.h"

namespace mla {

int64_t TensorView::numElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorView::shapeString() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

MappedFile::MappedFile(const std::string& path, FileAccess access) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw Error("cannot open " + path + ": " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    throw Error("cannot stat " + path + ": " + std::strerror(errno));
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0 && access == FileAccess::kResident) {
    try {
      resident_ = HugeBuffer(size_);
    } catch (const Error& e) {
      ::close(fd);
      throw Error(path + ": " + e.what());
    }
    for (size_t done = 0; done < size_;) {
      const ssize_t got = ::pread(fd, resident_.data() + done, std::min<size_t>(size_ - done, size_t{1} << 30), static_cast<off_t>(done));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        const std::string why = got < 0 ? std::strerror(errno) : "the file ended early (changed while being read?)";
        ::close(fd);
        throw Error("cannot read " + path + ": " + why);
      }
      done += static_cast<size_t>(got);
    }
    data_ = resident_.data();
  } else if (size_ > 0) {
    void* p = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      throw Error("cannot mmap " + path + ": " + std::strerror(errno));
    }
    data_ = static_cast<const unsigned char*>(p);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_ && !resident_.data()) munmap(const_cast<unsigned char*>(data_), size_);
}

std::string readTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path + ": " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool fileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool isDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

static DType parseDType(const std::string& s, const std::string& where) {
  if (s == "F32") return DType::kF32;
  if (s == "F16") return DType::kF16;
  if (s == "BF16") return DType::kBF16;
  throw Error(where + ": unsupported dtype " + s + " (supported: F32, F16, BF16)");
}

void SafetensorsSet::addFile(const std::string& path, const std::set<std::string>* only) {
  auto file = std::make_unique<MappedFile>(path, access_);
  const size_t size = file->size();
  if (size < 8) throw Error(path + ": truncated safetensors file (" + std::to_string(size) + " bytes)");
  uint64_t headerLen;
  std::memcpy(&headerLen, file->data(), 8);
  if (headerLen > size - 8) {
    throw Error(path + ": truncated safetensors file: header of " + std::to_string(headerLen) +
                " bytes but the file has " + std::to_string(size) + " bytes");
  }
  const std::string headerText(reinterpret_cast<const char*>(file->data()) + 8, headerLen);
  Json header;
  try {
    header = Json::parse(headerText);
  } catch (const Error& e) {
    throw Error(path + ": bad safetensors header: " + e.what());
  }
  if (!header.isObject()) throw Error(path + ": bad safetensors header: not a JSON object");
  const unsigned char* base = file->data() + 8 + headerLen;
  const size_t dataSize = size - 8 - headerLen;
  struct Range {
    size_t begin, end;
    std::string name;
  };
  std::vector<Range> ranges;
  for (const auto& [name, entry] : header.object()) {
    if (name == "__metadata__" || (only && !only->count(name))) continue;
    const std::string where = path + ": tensor " + name;
    if (!entry.isObject() || !entry.has("dtype") || !entry.has("shape") || !entry.has("data_offsets")) {
      throw Error(where + ": header entry lacks dtype, shape or data_offsets");
    }
    TensorView view;
    view.name = name;
    view.dtype = parseDType(entry.get("dtype").string(), where);
    for (const Json& d : entry.get("shape").array()) {
      if (!d.isNumber() || d.number() < 0 || d.number() != std::floor(d.number())) throw Error(where + ": bad shape (dimensions must be non-negative integers)");
      view.shape.push_back(static_cast<int64_t>(d.number()));
    }
    const auto& offsets = entry.get("data_offsets").array();
    if (offsets.size() != 2 || !offsets[0].isNumber() || !offsets[1].isNumber()) throw Error(where + ": bad data_offsets");
    const double begin = offsets[0].number(), end = offsets[1].number();
    if (begin != std::floor(begin) || end != std::floor(end)) throw Error(where + ": data_offsets must be integers");
    if (begin < 0 || end < begin || end > static_cast<double>(dataSize)) {
      throw Error(where + ": data_offsets [" + std::to_string(static_cast<int64_t>(begin)) + ", " +
                  std::to_string(static_cast<int64_t>(end)) + "] point outside the file's " +
                  std::to_string(dataSize) + " data bytes (truncated or corrupt file?)");
    }
    view.numBytes = static_cast<size_t>(end - begin);
    if (static_cast<size_t>(view.numElements()) * dtypeSize(view.dtype) != view.numBytes) {
      throw Error(where + ": shape " + view.shapeString() + " of " + dtypeName(view.dtype) + " needs " +
                  std::to_string(view.numElements() * static_cast<int64_t>(dtypeSize(view.dtype))) +
                  " bytes but data_offsets span " + std::to_string(view.numBytes));
    }
    view.data = base + static_cast<size_t>(begin);
    if (tensors_.count(name)) throw Error(where + ": tensor appears in more than one file");
    ranges.push_back({static_cast<size_t>(begin), static_cast<size_t>(end), name});
    tensors_[name] = std::move(view);
  }
  // Tensors may not share bytes: overlapping ranges are a corrupt (or hostile) header.
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].begin < ranges[i - 1].end) {
      throw Error(path + ": tensors " + ranges[i - 1].name + " and " + ranges[i].name + " overlap in the file (data_offsets [" +
                  std::to_string(ranges[i - 1].begin) + ", " + std::to_string(ranges[i - 1].end) + ") and [" + std::to_string(ranges[i].begin) + ", " +
                  std::to_string(ranges[i].end) + "))");
    }
  }
  files_.push_back(std::move(file));
}

std::unique_ptr<SafetensorsSet> SafetensorsSet::open(const std::string& path, FileAccess access) {
  auto set = std::unique_ptr<SafetensorsSet>(new SafetensorsSet());
  set->access_ = access;
  if (!isDirectory(path)) {
    if (!fileExists(path)) throw Error("no such checkpoint: " + path);
    set->addFile(path);
    return set;
  }
  const std::string single = path + "/model.safetensors";
  const std::string index = path + "/model.safetensors.index.json";
  if (fileExists(single)) {
    set->addFile(single);
  } else if (fileExists(index)) {
    Json j;
    try {
      j = Json::parse(readTextFile(index));
    } catch (const Error& e) {
      throw Error(index + ": " + e.what());
    }
    const Json* map = j.find("weight_map");
    if (!map || !map->isObject()) throw Error(index + ": no weight_map object");
    std::map<std::string, std::set<std::string>> shards;  // file -> the tensors the index puts there
    for (const auto& [name, file] : map->object()) {
      if (!file.isString()) throw Error(index + ": weight_map values must be file names");
      shards[file.string()].insert(name);
    }
    for (const auto& [shard, names] : shards) set->addFile(path + "/" + shard, &names);
    for (const auto& [name, file] : map->object()) {
      if (!set->has(name)) throw Error(index + ": tensor " + name + " is not in " + file.string());
    }
  } else {
    throw Error(path + ": no model.safetensors or model.safetensors.index.json");
  }
  return set;
}

const TensorView& SafetensorsSet::get(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw Error("checkpoint has no tensor " + name);
  return it->second;
}

}  // namespace mla
