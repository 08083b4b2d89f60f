// Safetensors files, mapped or read into memory: one file, or the shards named by
// model.safetensors.index.json.
#pragma once
#include <cstdint>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/huge_buffer.h"

namespace mla {

// A read-only view of one tensor inside a mapped file.
struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // points into the mapping; any alignment
  size_t numBytes = 0;

  int64_t numElements() const;
  std::string shapeString() const;  // "[256, 128]"
};

// How a checkpoint's bytes are held: mapped from the file (pages the kernel may drop and read
// again: right where the weights are copied elsewhere, as the CUDA backend does), or read into
// huge-page memory (core/huge_buffer.h: for the CPU backend, whose matmuls stream the weights
// from host memory at every decode step).
enum class FileAccess { kMapped, kResident };

class MappedFile {
 public:
  explicit MappedFile(const std::string& path, FileAccess access = FileAccess::kMapped);  // throws naming the path
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const unsigned char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  const unsigned char* data_ = nullptr;
  size_t size_ = 0;
  HugeBuffer resident_;  // kResident: the file's bytes
};

// All tensors of a checkpoint folder (or one .safetensors file), validated against the files' sizes.
class SafetensorsSet {
 public:
  // `path` is a folder (model.safetensors or model.safetensors.index.json inside) or a file.
  static std::unique_ptr<SafetensorsSet> open(const std::string& path, FileAccess access = FileAccess::kMapped);

  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorView& get(const std::string& name) const;  // throws naming the tensor
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }

 private:
  // Registers the file's tensors; with `only`, just those names (an index maps each tensor to one file).
  void addFile(const std::string& path, const std::set<std::string>* only = nullptr);
  FileAccess access_ = FileAccess::kMapped;
  std::vector<std::unique_ptr<MappedFile>> files_;
  std::map<std::string, TensorView> tensors_;
};

// Reads a whole small text file (config.json); throws naming the path.
std::string readTextFile(const std::string& path);
bool fileExists(const std::string& path);
bool isDirectory(const std::string& path);

}  // namespace mla
