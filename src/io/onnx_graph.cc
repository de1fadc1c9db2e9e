#include "amct/onnx_graph.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "amct/error.h"
#include "amct/file_io.h"
#include "amct/onnx_external_data.h"

namespace amct {

onnx::ModelProto parse_onnx_model(std::string_view bytes, const std::string& origin) {
  onnx::ModelProto model;
  // ParseFromArray takes an int size; a model of 2 GiB or more cannot be a
  // protobuf message (its weights belong in external data files).
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()))
    invalid("'" + origin + "' is " + std::to_string(bytes.size()) +
            " bytes; a serialized ONNX model must be under 2 GiB (larger weights belong in external data files)");
  if (bytes.empty() || !model.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    invalid("'" + origin + "' is not a valid ONNX model (protobuf parsing failed)");
  if (!model.has_graph()) invalid("'" + origin + "' is not a valid ONNX model: it has no graph");
  return model;
}

onnx::ModelProto load_onnx_model(const std::string& path, std::set<std::string>* was_external) {
  // Parsed from the file as it is read: the file's bytes are never held
  // beside the model (a model of up to 2 GB would be held twice).
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) fail(ErrorCode::kNotFound, "ONNX model '" + path + "' does not exist");
  if (std::filesystem::is_directory(path, ec)) invalid("ONNX model '" + path + "' is a directory, expected a file");
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(ErrorCode::kIoError, "ONNX model '" + path + "' cannot be read: " + std::strerror(errno));
  struct stat st;
  const bool empty = ::fstat(fd, &st) == 0 && st.st_size == 0;
  onnx::ModelProto model;
  const bool parsed = !empty && model.ParseFromFileDescriptor(fd);
  ::close(fd);
  if (!parsed) invalid("'" + path + "' is not a valid ONNX model (protobuf parsing failed)");
  if (!model.has_graph()) invalid("'" + path + "' is not a valid ONNX model: it has no graph");
  std::set<std::string> external = load_external_data(model, path);
  if (was_external) *was_external = std::move(external);
  return model;
}

void check_model_size(const onnx::ModelProto& model, const std::string& path) {
  const size_t size = model.ByteSizeLong();
  if (size >= (size_t{1} << 31) - 1)
    fail(ErrorCode::kRuntime, "model for '" + path + "' is " + std::to_string(size) +
                                  " bytes; protobuf cannot write 2 GiB or more in one message, and only initializers "
                                  "in raw_data can move to external data files");
}

std::string serialize_onnx_model(const onnx::ModelProto& model, const std::string& path) {
  check_model_size(model, path);
  std::string bytes;
  if (!model.SerializeToString(&bytes)) fail(ErrorCode::kRuntime, "cannot serialize the ONNX model for '" + path + "'");
  return bytes;
}

void save_onnx_model(const onnx::ModelProto& model, const std::string& path) {
  write_file_atomic(path, serialize_onnx_model(model, path), "ONNX model");
}

onnx::TensorProto* find_initializer(onnx::GraphProto& graph, const std::string& name) {
  for (auto& t : *graph.mutable_initializer())
    if (t.name() == name) return &t;
  return nullptr;
}

const onnx::TensorProto* find_initializer(const onnx::GraphProto& graph, const std::string& name) {
  for (const auto& t : graph.initializer())
    if (t.name() == name) return &t;
  return nullptr;
}

onnx::NodeProto* find_node(onnx::GraphProto& graph, const std::string& name) {
  for (auto& n : *graph.mutable_node())
    if (n.name() == name) return &n;
  return nullptr;
}

const onnx::NodeProto* find_node(const onnx::GraphProto& graph, const std::string& name) {
  for (const auto& n : graph.node())
    if (n.name() == name) return &n;
  return nullptr;
}

onnx::NodeProto* find_producer(onnx::GraphProto& graph, const std::string& tensor) {
  if (tensor.empty()) return nullptr;
  for (auto& n : *graph.mutable_node())
    for (const auto& out : n.output())
      if (out == tensor) return &n;
  return nullptr;
}

std::vector<onnx::NodeProto*> find_consumers(onnx::GraphProto& graph, const std::string& tensor) {
  std::vector<onnx::NodeProto*> consumers;
  for (auto& n : *graph.mutable_node())
    if (std::find(n.input().begin(), n.input().end(), tensor) != n.input().end()) consumers.push_back(&n);
  return consumers;
}

bool is_graph_output(const onnx::GraphProto& graph, const std::string& tensor) {
  for (const auto& o : graph.output())
    if (o.name() == tensor) return true;
  return false;
}

void remove_initializer(onnx::GraphProto& graph, const std::string& name) {
  auto* inits = graph.mutable_initializer();
  for (int i = 0; i < inits->size(); ++i) {
    if (inits->Get(i).name() == name) {
      inits->DeleteSubrange(i, 1);
      return;
    }
  }
}

void remove_unread_initializers(onnx::GraphProto& graph) {
  std::unordered_set<std::string> read;
  for (const auto& n : graph.node())
    for (const auto& in : n.input()) read.insert(in);
  for (const auto& o : graph.output()) read.insert(o.name());
  auto* inits = graph.mutable_initializer();
  google::protobuf::RepeatedPtrField<onnx::TensorProto> kept;
  for (auto& t : *inits)
    if (read.count(t.name())) kept.Add(std::move(t));
  inits->Swap(&kept);
}

void remove_nodes(onnx::GraphProto& graph, const std::vector<std::string>& names) {
  const std::unordered_set<std::string> doomed(names.begin(), names.end());
  auto* nodes = graph.mutable_node();
  google::protobuf::RepeatedPtrField<onnx::NodeProto> kept;
  for (auto& n : *nodes)
    if (!doomed.count(n.name())) kept.Add(std::move(n));
  nodes->Swap(&kept);
}

void remove_dead_nodes(onnx::GraphProto& graph) {
  // Counting reads and following each removal back to the producers of the
  // removed node's inputs is linear; re-scanning the graph until nothing
  // changes was quadratic on a long dead chain.
  const int count = graph.node_size();
  std::unordered_map<std::string, int> reads;
  std::unordered_map<std::string, std::vector<int>> producers;
  for (int i = 0; i < count; ++i) {
    for (const auto& in : graph.node(i).input()) ++reads[in];
    for (const auto& out : graph.node(i).output()) producers[out].push_back(i);
  }
  for (const auto& o : graph.output()) ++reads[o.name()];
  const auto unread = [&](int i) {
    return std::none_of(graph.node(i).output().begin(), graph.node(i).output().end(),
                        [&](const std::string& out) { return reads[out] > 0; });
  };
  std::vector<char> dead(static_cast<size_t>(count), 0);
  std::vector<int> pending;
  for (int i = 0; i < count; ++i)
    if (unread(i)) pending.push_back(i);
  while (!pending.empty()) {
    const int i = pending.back();
    pending.pop_back();
    if (dead[static_cast<size_t>(i)] || !unread(i)) continue;
    dead[static_cast<size_t>(i)] = 1;
    for (const auto& in : graph.node(i).input())
      if (--reads[in] == 0)
        for (int p : producers[in]) pending.push_back(p);
  }
  google::protobuf::RepeatedPtrField<onnx::NodeProto> kept;
  for (int i = 0; i < count; ++i)
    if (!dead[static_cast<size_t>(i)]) kept.Add(std::move(*graph.mutable_node(i)));
  graph.mutable_node()->Swap(&kept);
}

void topological_sort(onnx::GraphProto& graph) {
  const int count = graph.node_size();
  std::unordered_map<std::string, int> producer_of;
  for (int i = 0; i < count; ++i)
    for (const auto& out : graph.node(i).output())
      if (!out.empty()) producer_of[out] = i;
  std::vector<std::vector<int>> users(count);
  std::vector<int> pending(count, 0);
  for (int i = 0; i < count; ++i) {
    std::set<int> deps;
    for (const auto& in : graph.node(i).input()) {
      auto it = producer_of.find(in);
      if (it != producer_of.end() && it->second != i) deps.insert(it->second);
    }
    pending[i] = static_cast<int>(deps.size());
    for (int d : deps) users[d].push_back(i);
  }
  // A min-heap on the original index keeps the original order where possible.
  std::set<int> ready;
  for (int i = 0; i < count; ++i)
    if (pending[i] == 0) ready.insert(i);
  std::vector<int> order;
  while (!ready.empty()) {
    const int i = *ready.begin();
    ready.erase(ready.begin());
    order.push_back(i);
    for (int u : users[i])
      if (--pending[u] == 0) ready.insert(u);
  }
  if (static_cast<int>(order.size()) != count) fail(ErrorCode::kRuntime, "the ONNX graph has a cycle");
  google::protobuf::RepeatedPtrField<onnx::NodeProto> sorted;
  for (int i : order) *sorted.Add() = graph.node(i);
  graph.mutable_node()->Swap(&sorted);
}

const onnx::TensorProto* resolve_constant(const onnx::GraphProto& graph, const std::string& tensor) {
  std::string name = tensor;
  for (int hops = 0; hops < 64; ++hops) {
    if (const auto* init = find_initializer(graph, name)) return init;
    const onnx::NodeProto* producer = nullptr;
    for (const auto& n : graph.node())
      for (const auto& out : n.output())
        if (out == name) producer = &n;
    if (!producer) return nullptr;
    if (producer->op_type() == "Identity" && producer->input_size() == 1) {
      name = producer->input(0);
      continue;
    }
    if (producer->op_type() == "Constant") {
      const auto* value = find_attribute(*producer, "value");
      return value && value->has_t() ? &value->t() : nullptr;
    }
    return nullptr;
  }
  return nullptr;
}

// Bits per element of the types whose raw_data size is fixed by the dims;
// 0 for STRING and types this build does not know.
int element_bits(int32_t type) {
  switch (type) {
    case 2: case 3: case 9: case 17: case 18: case 19: case 20: case 24: return 8;  // UINT8 INT8 BOOL FLOAT8* E8M0
    case 4: case 5: case 10: case 16: return 16;                                  // UINT16 INT16 FLOAT16 BFLOAT16
    case 1: case 6: case 12: return 32;                                           // FLOAT INT32 UINT32
    case 7: case 11: case 13: case 14: return 64;                                 // INT64 DOUBLE UINT64 COMPLEX64
    case 15: return 128;                                                          // COMPLEX128
    case 21: case 22: case 23: return 4;                                          // UINT4 INT4 FLOAT4E2M1
    case 25: case 26: return 2;                                                   // UINT2 INT2
    default: return 0;
  }
}

std::vector<int64_t> tensor_dims(const onnx::TensorProto& tensor) {
  return {tensor.dims().begin(), tensor.dims().end()};
}

int64_t checked_numel(std::span<const int64_t> dims, const std::string& what) {
  int64_t n = 1;
  for (const int64_t d : dims) {
    if (d < 0) invalid(what + " has dims " + dims_text(dims) + "; a dim cannot be negative");
    if (__builtin_mul_overflow(n, d, &n))
      invalid(what + " has dims " + dims_text(dims) + ", whose product overflows int64");
  }
  return n;
}

int64_t tensor_numel(const onnx::TensorProto& tensor) {
  return checked_numel({tensor.dims().data(), static_cast<size_t>(tensor.dims_size())},
                       "tensor '" + tensor.name() + "'");
}

std::string dims_text(std::span<const int64_t> dims) {
  std::string text = "[";
  for (size_t i = 0; i < dims.size(); ++i) text += (i ? ", " : "") + std::to_string(dims[i]);
  return text + "]";
}

namespace {

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ff;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exponent = 127 - 15 + 1;
      while (!(mantissa & 0x400)) {
        mantissa <<= 1;
        --exponent;
      }
      bits = sign | (exponent << 23) | ((mantissa & 0x3ff) << 13);
    }
  } else if (exponent == 0x1f) {
    bits = sign | 0x7f800000 | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  float out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

}  // namespace

namespace {

// Where a floating-point tensor keeps its values and how many it holds there:
// `count` values of `bytes` each in raw_data, or `count` entries of a typed
// field. A count that disagrees with the dims is a malformed tensor, refused
// before anything is read or allocated.
struct FloatStorage {
  const char* field;
  size_t count;
};

FloatStorage float_storage(const onnx::TensorProto& tensor, size_t element_bytes) {
  if (tensor.has_raw_data()) return {"raw_data", tensor.raw_data().size() / element_bytes};
  switch (tensor.data_type()) {
    case onnx::TensorProto::FLOAT: return {"float_data", static_cast<size_t>(tensor.float_data_size())};
    case onnx::TensorProto::DOUBLE: return {"double_data", static_cast<size_t>(tensor.double_data_size())};
    default: return {"int32_data", static_cast<size_t>(tensor.int32_data_size())};
  }
}

}  // namespace

std::vector<float> tensor_to_floats(const onnx::TensorProto& tensor) {
  const std::string what = "tensor '" + tensor.name() + "'";
  size_t element_bytes = 0;
  const char* type_name = "";
  switch (tensor.data_type()) {
    case onnx::TensorProto::FLOAT: element_bytes = 4, type_name = "FLOAT"; break;
    case onnx::TensorProto::FLOAT16: element_bytes = 2, type_name = "FLOAT16"; break;
    case onnx::TensorProto::DOUBLE: element_bytes = 8, type_name = "DOUBLE"; break;
    default:
      invalid(what + " has ONNX data type " + std::to_string(tensor.data_type()) +
              ", expected a floating-point tensor");
  }
  if (tensor.data_location() == onnx::TensorProto::EXTERNAL)
    invalid(what + " keeps its data in an external file, which is not supported; save the model with its "
                   "weights inside the ONNX file");
  const int64_t n = tensor_numel(tensor);
  const std::vector<int64_t> dims = tensor_dims(tensor);
  const FloatStorage storage = float_storage(tensor, element_bytes);
  const bool raw = tensor.has_raw_data();
  if ((raw && tensor.raw_data().size() % element_bytes != 0) || storage.count != static_cast<uint64_t>(n))
    invalid(what + " (" + type_name + ", dims " + dims_text(dims) + ") needs " + std::to_string(n) + " values" +
            (raw ? ", " + std::to_string(static_cast<uint64_t>(n) * element_bytes) + " bytes of raw_data, but raw_data has " +
                       std::to_string(tensor.raw_data().size()) + " bytes"
                 : std::string(" in ") + storage.field + ", but " + storage.field + " has " +
                       std::to_string(storage.count)));
  std::vector<float> out(static_cast<size_t>(n));
  const char* bytes = raw ? tensor.raw_data().data() : nullptr;
  for (size_t i = 0; i < out.size(); ++i) {
    switch (tensor.data_type()) {
      case onnx::TensorProto::FLOAT:
        if (raw) {
          std::memcpy(&out[i], bytes + 4 * i, 4);
        } else {
          out[i] = tensor.float_data(static_cast<int>(i));
        }
        break;
      case onnx::TensorProto::FLOAT16: {
        uint16_t h;
        if (raw) {
          std::memcpy(&h, bytes + 2 * i, 2);
        } else {
          h = static_cast<uint16_t>(tensor.int32_data(static_cast<int>(i)));
        }
        out[i] = half_to_float(h);
        break;
      }
      default: {
        double d;
        if (raw) {
          std::memcpy(&d, bytes + 8 * i, 8);
        } else {
          d = tensor.double_data(static_cast<int>(i));
        }
        out[i] = static_cast<float>(d);
      }
    }
  }
  return out;
}

std::vector<float> take_tensor_floats(onnx::TensorProto& tensor) {
  std::vector<float> values = tensor_to_floats(tensor);
  // clear_*() keeps a field's allocation for reuse; swapping with empty
  // containers returns it.
  std::string().swap(*tensor.mutable_raw_data());
  tensor.clear_raw_data();
  google::protobuf::RepeatedField<float>().Swap(tensor.mutable_float_data());
  google::protobuf::RepeatedField<int32_t>().Swap(tensor.mutable_int32_data());
  google::protobuf::RepeatedField<double>().Swap(tensor.mutable_double_data());
  return values;
}

std::span<float> float_values_in_place(onnx::TensorProto& tensor) {
  const bool raw_float = tensor.data_type() == onnx::TensorProto::FLOAT &&
                         tensor.data_location() != onnx::TensorProto::EXTERNAL &&
                         tensor.raw_data().size() == static_cast<uint64_t>(tensor_numel(tensor)) * sizeof(float);
  // Any other form is read (and checked) by tensor_to_floats, then stored as raw FLOAT.
  if (!raw_float) set_float_tensor(tensor, take_tensor_floats(tensor));
  std::string& raw = *tensor.mutable_raw_data();
  return {reinterpret_cast<float*>(raw.data()), raw.size() / sizeof(float)};
}

void set_float_tensor(onnx::TensorProto& tensor, std::span<const float> values) {
  set_float_tensor(tensor, values, tensor_dims(tensor));
}

void set_float_tensor(onnx::TensorProto& tensor, std::span<const float> values, const std::vector<int64_t>& dims) {
  const std::string name = tensor.name();
  tensor.Clear();
  tensor.set_name(name);
  for (auto d : dims) tensor.add_dims(d);
  tensor.set_data_type(onnx::TensorProto::FLOAT);
  tensor.set_raw_data(std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
}

void set_raw_tensor(onnx::TensorProto& tensor, int32_t data_type, std::string raw) {
  const std::string name = tensor.name();
  const std::vector<int64_t> dims = tensor_dims(tensor);
  tensor.Clear();
  tensor.set_name(name);
  for (auto d : dims) tensor.add_dims(d);
  tensor.set_data_type(data_type);
  tensor.set_raw_data(std::move(raw));
}

onnx::TensorProto make_float_tensor(const std::string& name, const std::vector<int64_t>& dims,
                                    std::span<const float> values) {
  onnx::TensorProto t;
  t.set_name(name);
  set_float_tensor(t, values, dims);
  return t;
}

const onnx::AttributeProto* find_attribute(const onnx::NodeProto& node, const std::string& name) {
  for (const auto& a : node.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}

namespace {
// The attribute `name` of `node` if present; one of another type is a
// malformed model, named in the error rather than read as zero.
const onnx::AttributeProto* typed_attribute(const onnx::NodeProto& node, const std::string& name,
                                            onnx::AttributeProto::AttributeType type, const char* type_name) {
  const auto* a = find_attribute(node, name);
  if (a && a->type() != type)
    invalid("node '" + node.name() + "' (" + node.op_type() + "): attribute '" + name + "' has type " +
            onnx::AttributeProto::AttributeType_Name(a->type()) + "; expected " + type_name);
  return a;
}
}  // namespace

int64_t get_int_attribute(const onnx::NodeProto& node, const std::string& name, int64_t fallback) {
  const auto* a = typed_attribute(node, name, onnx::AttributeProto::INT, "INT");
  return a ? a->i() : fallback;
}

float get_float_attribute(const onnx::NodeProto& node, const std::string& name, float fallback) {
  const auto* a = typed_attribute(node, name, onnx::AttributeProto::FLOAT, "FLOAT");
  return a ? a->f() : fallback;
}

std::vector<int64_t> get_ints_attribute(const onnx::NodeProto& node, const std::string& name) {
  const auto* a = typed_attribute(node, name, onnx::AttributeProto::INTS, "INTS");
  if (!a) return {};
  return {a->ints().begin(), a->ints().end()};
}

std::string get_string_attribute(const onnx::NodeProto& node, const std::string& name, const std::string& fallback) {
  const auto* a = typed_attribute(node, name, onnx::AttributeProto::STRING, "STRING");
  return a ? a->s() : fallback;
}

namespace {
onnx::AttributeProto* attribute_slot(onnx::NodeProto& node, const std::string& name) {
  for (auto& a : *node.mutable_attribute())
    if (a.name() == name) {
      a.Clear();
      a.set_name(name);
      return &a;
    }
  auto* a = node.add_attribute();
  a->set_name(name);
  return a;
}
}  // namespace

void set_int_attribute(onnx::NodeProto& node, const std::string& name, int64_t value) {
  auto* a = attribute_slot(node, name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(value);
}

void set_float_attribute(onnx::NodeProto& node, const std::string& name, float value) {
  auto* a = attribute_slot(node, name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(value);
}

void set_string_attribute(onnx::NodeProto& node, const std::string& name, const std::string& value) {
  auto* a = attribute_slot(node, name);
  a->set_type(onnx::AttributeProto::STRING);
  a->set_s(value);
}

void set_ints_attribute(onnx::NodeProto& node, const std::string& name, const std::vector<int64_t>& values) {
  auto* a = attribute_slot(node, name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t v : values) a->add_ints(v);
}

void remove_attribute(onnx::NodeProto& node, const std::string& name) {
  auto* attrs = node.mutable_attribute();
  for (int i = 0; i < attrs->size(); ++i)
    if (attrs->Get(i).name() == name) {
      attrs->DeleteSubrange(i, 1);
      return;
    }
}

std::string unique_node_name(const onnx::GraphProto& graph, const std::string& base) {
  std::unordered_set<std::string> used;
  for (const auto& n : graph.node()) used.insert(n.name());
  if (!used.count(base)) return base;
  for (int i = 1;; ++i) {
    std::string candidate = base + std::to_string(i);
    if (!used.count(candidate)) return candidate;
  }
}

GraphIndex::GraphIndex(onnx::GraphProto& graph) {
  for (auto& node : *graph.mutable_node()) {
    for (const auto& out : node.output())
      if (!out.empty()) producers_.emplace(out, &node);
    for (int i = 0; i < node.input_size(); ++i) {
      const std::string& in = node.input(i);
      // An empty name is an omitted optional input, not a tensor. A node
      // reading a tensor twice is one consumer, as in find_consumers.
      if (!in.empty() && std::find(node.input().begin(), node.input().begin() + i, in) == node.input().begin() + i)
        consumers_[in].push_back(&node);
    }
  }
  for (const auto& t : graph.initializer()) initializers_.emplace(t.name(), &t);
  for (const auto& o : graph.output()) outputs_.insert(o.name());
}

onnx::NodeProto* GraphIndex::producer(const std::string& tensor) const {
  const auto it = producers_.find(tensor);
  return it == producers_.end() ? nullptr : it->second;
}

const std::vector<onnx::NodeProto*>& GraphIndex::consumers(const std::string& tensor) const {
  static const std::vector<onnx::NodeProto*> kNone;
  const auto it = consumers_.find(tensor);
  return it == consumers_.end() ? kNone : it->second;
}

const onnx::TensorProto* GraphIndex::initializer(const std::string& tensor) const {
  const auto it = initializers_.find(tensor);
  return it == initializers_.end() ? nullptr : it->second;
}

bool GraphIndex::is_graph_output(const std::string& tensor) const { return outputs_.count(tensor) > 0; }

const onnx::TensorProto* GraphIndex::resolve_constant(const std::string& tensor) const {
  std::string name = tensor;
  for (int hops = 0; hops < 64; ++hops) {
    if (const auto* init = initializer(name)) return init;
    const onnx::NodeProto* node = producer(name);
    if (!node) return nullptr;
    if (node->op_type() == "Identity" && node->input_size() == 1) {
      name = node->input(0);
      continue;
    }
    if (node->op_type() == "Constant") {
      const auto* value = find_attribute(*node, "value");
      return value && value->has_t() ? &value->t() : nullptr;
    }
    return nullptr;
  }
  return nullptr;
}

}  // namespace amct
