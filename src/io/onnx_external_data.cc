#include "amct/onnx_external_data.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "amct/error.h"
#include "amct/onnx_graph.h"

namespace amct {
namespace {
namespace fs = std::filesystem;

// A tensor with external data and the words that name it in messages.
struct ExternalTensor {
  onnx::TensorProto* tensor;
  std::string what;  // "initializer 'w' of ONNX model 'dir/m.onnx'"
  bool initializer;
};

// Every tensor of the model whose data is external, subgraphs included. An
// explicit stack: nesting depth costs no C++ stack.
std::vector<ExternalTensor> external_tensors(onnx::ModelProto& model, const std::string& model_path) {
  std::vector<ExternalTensor> found;
  const std::string of_model = " of ONNX model '" + model_path + "'";
  std::vector<onnx::GraphProto*> graphs = {model.mutable_graph()};
  while (!graphs.empty()) {
    onnx::GraphProto* graph = graphs.back();
    graphs.pop_back();
    for (auto& t : *graph->mutable_initializer())
      if (t.data_location() == onnx::TensorProto::EXTERNAL)
        found.push_back({&t, "initializer '" + t.name() + "'" + of_model, graph == model.mutable_graph()});
    for (auto& node : *graph->mutable_node()) {
      for (auto& a : *node.mutable_attribute()) {
        const std::string what = "attribute '" + a.name() + "' of node '" + node.name() + "'" + of_model;
        if (a.has_t() && a.t().data_location() == onnx::TensorProto::EXTERNAL)
          found.push_back({a.mutable_t(), what, false});
        for (auto& t : *a.mutable_tensors())
          if (t.data_location() == onnx::TensorProto::EXTERNAL) found.push_back({&t, what, false});
        if (a.has_g()) graphs.push_back(a.mutable_g());
        for (auto& g : *a.mutable_graphs()) graphs.push_back(&g);
      }
    }
  }
  return found;
}

struct ExternalRef {
  std::string location;
  uint64_t offset = 0;
  std::optional<uint64_t> length;
};

uint64_t parse_byte_count(const std::string& text, const std::string& key, const std::string& what) {
  const bool digits = !text.empty() && text.size() <= 18 &&
                      std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits) invalid(what + ": external data " + key + " '" + text + "' is not a non-negative integer");
  return std::stoull(text);
}

ExternalRef parse_ref(const onnx::TensorProto& tensor, const std::string& what) {
  ExternalRef ref;
  bool has_location = false;
  for (const auto& entry : tensor.external_data()) {
    if (entry.key() == "location") {
      ref.location = entry.value();
      has_location = true;
    } else if (entry.key() == "offset") {
      ref.offset = parse_byte_count(entry.value(), "offset", what);
    } else if (entry.key() == "length") {
      ref.length = parse_byte_count(entry.value(), "length", what);
    }
  }
  if (!has_location || ref.location.empty())
    invalid(what + " is stored in an external file, but its external_data has no 'location'");
  return ref;
}

// The bytes the tensor's type and dims call for.
uint64_t expected_bytes(const onnx::TensorProto& tensor, const std::string& what) {
  const int bits = element_bits(tensor.data_type());
  if (bits == 0)
    invalid(what + " has data type " + std::to_string(tensor.data_type()) +
            ", which has no fixed size and cannot be stored in an external file");
  const int64_t count = checked_numel(tensor_dims(tensor), what);
  if (static_cast<uint64_t>(count) > (std::numeric_limits<uint64_t>::max() - 7) / static_cast<uint64_t>(bits))
    invalid(what + " (dims " + dims_text(tensor_dims(tensor)) + ") is too large to hold in memory");
  return (static_cast<uint64_t>(count) * static_cast<uint64_t>(bits) + 7) / 8;
}

// The data file of `ref`, checked to lie inside `dir`: by its text first
// (absolute, "..") and then, once it exists, by where symbolic links take it.
fs::path resolve_location(const ExternalRef& ref, const fs::path& dir, const std::string& what) {
  const fs::path location(ref.location);
  const std::string dir_text = dir.string();
  if (location.is_absolute() || location.has_root_name() || location.has_root_directory())
    invalid(what + ": external data location '" + ref.location +
            "' is an absolute path; expected a path relative to the model's directory '" + dir_text + "'");
  const fs::path normal = location.lexically_normal();
  if (normal.empty() || *normal.begin() == ".." || normal == ".")
    invalid(what + ": external data location '" + ref.location + "' leaves the model's directory '" + dir_text + "'");
  const fs::path file = dir / normal;
  std::error_code ec;
  const fs::file_status status = fs::status(file, ec);
  if (!fs::exists(status))
    fail(ErrorCode::kNotFound, what + ": external data file '" + file.string() + "' does not exist");
  const fs::path real_dir = fs::canonical(dir, ec);
  const fs::path real_file = ec ? fs::path() : fs::canonical(file, ec);
  const fs::path inside = ec ? fs::path("..") : real_file.lexically_relative(real_dir);
  if (inside.empty() || *inside.begin() == "..")
    invalid(what + ": external data location '" + ref.location + "' leaves the model's directory '" + dir_text +
            "' (it resolves to '" + real_file.string() + "')");
  if (!fs::is_regular_file(status))
    invalid(what + ": external data file '" + file.string() + "' is not a regular file");
  return file;
}

// Data files opened once each, closed when done.
class DataFiles {
 public:
  DataFiles() = default;
  DataFiles(const DataFiles&) = delete;
  DataFiles& operator=(const DataFiles&) = delete;
  ~DataFiles() {
    for (const auto& [path, file] : open_) ::close(file.fd);
  }

  struct Open {
    int fd;
    uint64_t size;
  };

  const Open& open(const fs::path& path, const std::string& what) {
    const auto it = open_.find(path.string());
    if (it != open_.end()) return it->second;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      fail(ErrorCode::kIoError, what + ": external data file '" + path.string() + "' cannot be read: " + std::strerror(errno));
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      fail(ErrorCode::kIoError, what + ": external data file '" + path.string() + "' cannot be read: " + std::strerror(err));
    }
    return open_.emplace(path.string(), Open{fd, static_cast<uint64_t>(st.st_size)}).first->second;
  }

 private:
  std::map<std::string, Open> open_;
};

void read_exactly(int fd, char* out, uint64_t length, uint64_t offset, const fs::path& path, const std::string& what) {
  uint64_t done = 0;
  while (done < length) {
    const ssize_t n = ::pread(fd, out + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      fail(ErrorCode::kIoError, what + ": reading external data file '" + path.string() + "' failed: " +
                                    (n < 0 ? std::strerror(errno) : "the file ended early"));
    done += static_cast<uint64_t>(n);
  }
}

void load_tensor(const ExternalTensor& item, const fs::path& dir, DataFiles& files) {
  onnx::TensorProto& tensor = *item.tensor;
  const ExternalRef ref = parse_ref(tensor, item.what);
  const uint64_t bytes = expected_bytes(tensor, item.what);
  const fs::path path = resolve_location(ref, dir, item.what);
  const DataFiles::Open& file = files.open(path, item.what);
  if (ref.offset > file.size)
    invalid(item.what + ": external data offset " + std::to_string(ref.offset) + " is beyond the end of '" +
            path.string() + "' (" + std::to_string(file.size) + " bytes)");
  // Without "length" the data runs to the end of the file (ONNX's rule).
  const uint64_t length = ref.length.value_or(file.size - ref.offset);
  if (length > file.size - ref.offset)
    invalid(item.what + ": external data offset " + std::to_string(ref.offset) + " + length " + std::to_string(length) +
            " is beyond the end of '" + path.string() + "' (" + std::to_string(file.size) + " bytes)");
  if (length != bytes)
    invalid(item.what + " (dims " + dims_text(tensor_dims(tensor)) + ") needs " + std::to_string(bytes) +
            " bytes, but its external data in '" + path.string() + "' has " + std::to_string(length));
  std::string& raw = *tensor.mutable_raw_data();
  raw.resize(length);
  read_exactly(file.fd, raw.data(), length, ref.offset, path, item.what);
  tensor.clear_external_data();
  tensor.clear_data_location();
}

// Serializes `model` straight into its staged file: its bytes are never held
// as one string beside the model.
void stage_serialized(FileSet& files, const onnx::ModelProto& model, const std::string& path) {
  check_model_size(model, path);
  files.stage(
      path,
      [&](int fd) {
        if (!model.SerializeToFileDescriptor(fd))
          fail(ErrorCode::kIoError, "ONNX model: writing '" + path + "' failed: " + std::strerror(errno));
      },
      "ONNX model");
}

constexpr uint64_t kAlignment = 4096;  // page-aligned offsets let readers map the data

// Bytes each moved tensor adds to the .onnx file: its external_data entries.
size_t entry_bytes(const std::string& file_name) { return file_name.size() + 64; }

}  // namespace

std::set<std::string> load_external_data(onnx::ModelProto& model, const std::string& model_path) {
  const std::vector<ExternalTensor> tensors = external_tensors(model, model_path);
  std::set<std::string> names;
  if (tensors.empty()) return names;
  const fs::path parent = fs::path(model_path).parent_path();
  const fs::path dir = parent.empty() ? fs::path(".") : parent;
  DataFiles files;
  for (const auto& item : tensors) {
    load_tensor(item, dir, files);
    if (item.initializer) names.insert(item.tensor->name());
  }
  return names;
}

std::string external_file_name(const std::string& tensor_name, const std::string& suffix) {
  std::string name = tensor_name;
  for (char& c : name) {
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                       c == '_' || c == '-';
    if (!plain) c = '_';
  }
  // "." or ".." would name a directory, not a file.
  if (name.find_first_not_of('.') == std::string::npos) name.insert(0, "_");
  return name + suffix;
}

std::vector<std::string> stage_onnx_model(FileSet& files, onnx::ModelProto model, const std::string& path,
                                          const ExternalDataRule& rule) {
  return stage_onnx_model_keeping_data(files, model, path, rule);
}

std::vector<std::string> stage_onnx_model_keeping_data(FileSet& files, onnx::ModelProto& model,
                                                       const std::string& path, const ExternalDataRule& rule) {
  std::vector<onnx::TensorProto*> candidates;
  for (auto& t : *model.mutable_graph()->mutable_initializer())
    if (!t.raw_data().empty()) candidates.push_back(&t);
  // Largest first, as AMCT moves them; graph order among equals.
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const auto* a, const auto* b) { return a->raw_data().size() > b->raw_data().size(); });
  const std::string one_file = fs::path(path).filename().string() + ".data";
  const auto file_of = [&](const onnx::TensorProto& t) {
    return rule.per_tensor_suffix.empty() ? one_file : external_file_name(t.name(), rule.per_tensor_suffix);
  };

  size_t size = model.ByteSizeLong();
  std::vector<onnx::TensorProto*> moved;
  std::vector<bool> taken(candidates.size(), false);
  const auto take = [&](size_t i) {
    taken[i] = true;
    moved.push_back(candidates[i]);
    size = size - std::min(size, candidates[i]->raw_data().size()) + entry_bytes(file_of(*candidates[i]));
  };
  for (size_t i = 0; i < candidates.size(); ++i)
    if (rule.always.count(candidates[i]->name())) take(i);
  for (size_t i = 0; i < candidates.size() && size >= rule.limit; ++i)
    if (!taken[i]) take(i);
  if (moved.empty()) {
    stage_serialized(files, model, path);
    return {};
  }

  // Each moved tensor's bytes leave the proto by a swap, not a copy, and
  // are written from here; tensors sharing a file follow each other.
  struct DataFile {
    std::vector<std::string_view> pieces;
    uint64_t size = 0;
  };
  static const std::string zeros(kAlignment, '\0');
  std::map<std::string, DataFile> data_files;
  // The moved tensors get their bytes back however this ends.
  struct Restore {
    std::vector<onnx::TensorProto*>& tensors;
    std::vector<std::string> held;
    ~Restore() {
      for (size_t i = 0; i < tensors.size(); ++i) {
        if (tensors[i]->data_location() != onnx::TensorProto::EXTERNAL) continue;
        tensors[i]->clear_external_data();
        tensors[i]->clear_data_location();
        tensors[i]->mutable_raw_data()->swap(held[i]);
      }
    }
  } restore{moved, std::vector<std::string>(moved.size())};
  std::vector<std::string>& held = restore.held;
  for (size_t i = 0; i < moved.size(); ++i) {
    onnx::TensorProto& t = *moved[i];
    const std::string name = file_of(t);
    DataFile& file = data_files[name];
    const uint64_t offset = (file.size + kAlignment - 1) / kAlignment * kAlignment;
    if (offset > file.size) file.pieces.emplace_back(zeros.data(), offset - file.size);
    held[i].swap(*t.mutable_raw_data());
    t.clear_raw_data();
    file.pieces.emplace_back(held[i]);
    file.size = offset + held[i].size();
    t.set_data_location(onnx::TensorProto::EXTERNAL);
    t.clear_external_data();
    const std::pair<const char*, std::string> entries[] = {
        {"location", name}, {"offset", std::to_string(offset)}, {"length", std::to_string(held[i].size())}};
    for (const auto& [key, value] : entries) {
      auto* entry = t.add_external_data();
      entry->set_key(key);
      entry->set_value(value);
    }
  }
  check_model_size(model, path);  // before GBs of data are written
  const fs::path dir = fs::path(path).parent_path();
  std::vector<std::string> written;
  for (const auto& [name, file] : data_files) {
    const std::string data_path = (dir / name).string();
    files.stage(data_path, file.pieces, "ONNX external data file");
    written.push_back(data_path);
  }
  stage_serialized(files, model, path);
  return written;
}

}  // namespace amct
