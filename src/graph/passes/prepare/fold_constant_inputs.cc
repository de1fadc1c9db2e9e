// torch's dynamo exporter computes some layer inputs instead of storing
// them: the zero bias of a bias-less conv is Shape(weight) -> (Expand or
// Concat) -> CastLike -> Expand, and a BatchNorm without affine parameters
// gets its scale and shift from Shape(activation) -> Expand. The fusion and
// weight passes need every weight, bias and BatchNorm parameter as an
// initializer, so each such sub-graph is evaluated here and replaced by its
// value. Anything that is not provably constant, or that is malformed or too
// large, is left untouched: this pass never fails.
#include <algorithm>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <functional>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "amct/layer_kind.h"
#include "amct/model_prep.h"
#include "amct/onnx_graph.h"

namespace amct {
namespace {

using Dims = std::vector<int64_t>;

// No real weight a layer computes comes near this; the bound keeps a
// malformed Expand or ConstantOfShape from exhausting memory (values are held
// as 8-byte numbers).
constexpr int64_t kMaxElements = int64_t{1} << 26;
// The same bound for everything one pass evaluates together.
constexpr int64_t kMaxTotalElements = int64_t{1} << 27;

bool is_real_type(int32_t type) {
  return type == onnx::TensorProto::FLOAT || type == onnx::TensorProto::FLOAT16 || type == onnx::TensorProto::DOUBLE;
}

bool is_int_type(int32_t type) { return type == onnx::TensorProto::INT64 || type == onnx::TensorProto::INT32; }

// A constant tensor. Real types are held as double, rounded to the precision
// of `type` after every operation, so results equal those of the runtime;
// integer types as int64, INT32 values checked to stay in range.
struct Value {
  int32_t type = onnx::TensorProto::FLOAT;
  Dims dims;
  std::vector<double> reals;
  std::vector<int64_t> ints;

  bool real() const { return is_real_type(type); }
  int64_t size() const { return static_cast<int64_t>(real() ? reals.size() : ints.size()); }
  // Resizes the storage of the type to `count` elements.
  void allocate(int64_t count) {
    if (real())
      reals.assign(static_cast<size_t>(count), 0.0);
    else
      ints.assign(static_cast<size_t>(count), 0);
  }
  void copy_element(int64_t to, const Value& from, int64_t at) {
    if (real())
      reals[static_cast<size_t>(to)] = from.reals[static_cast<size_t>(at)];
    else
      ints[static_cast<size_t>(to)] = from.ints[static_cast<size_t>(at)];
  }
};

// Element count of `dims`; nullopt for a negative dim, an int64 overflow or
// more than kMaxElements.
std::optional<int64_t> element_count(const Dims& dims) {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0 || __builtin_mul_overflow(n, d, &n) || n > kMaxElements) return std::nullopt;
  }
  return n;
}

double round_to(double v, int32_t type) {
  if (type == onnx::TensorProto::FLOAT) return static_cast<float>(v);
  if (type == onnx::TensorProto::FLOAT16) return static_cast<double>(static_cast<_Float16>(v));
  return v;
}

bool fits(int64_t v, int32_t type) { return type == onnx::TensorProto::INT64 || (v >= INT32_MIN && v <= INT32_MAX); }

// Rounds reals to the type and checks integer ranges; false if an integer
// does not fit.
bool normalize(Value& v) {
  if (v.real()) {
    for (double& x : v.reals) x = round_to(x, v.type);
    return true;
  }
  return std::all_of(v.ints.begin(), v.ints.end(), [&](int64_t x) { return fits(x, v.type); });
}

size_t element_bytes(int32_t type) {
  switch (type) {
    case onnx::TensorProto::FLOAT16: return 2;
    case onnx::TensorProto::FLOAT:
    case onnx::TensorProto::INT32: return 4;
    default: return 8;
  }
}

double half_bits_to_double(uint16_t bits) {
  _Float16 h;
  std::memcpy(&h, &bits, sizeof h);
  return static_cast<double>(h);
}

// Decodes one element of little-endian raw data (the ONNX layout).
void decode_raw(Value& v, int64_t i, const char* p) {
  const size_t k = static_cast<size_t>(i);
  switch (v.type) {
    case onnx::TensorProto::FLOAT: {
      float f;
      std::memcpy(&f, p, sizeof f);
      v.reals[k] = f;
      break;
    }
    case onnx::TensorProto::FLOAT16: {
      uint16_t bits;
      std::memcpy(&bits, p, sizeof bits);
      v.reals[k] = half_bits_to_double(bits);
      break;
    }
    case onnx::TensorProto::DOUBLE: std::memcpy(&v.reals[k], p, sizeof(double)); break;
    case onnx::TensorProto::INT32: {
      int32_t x;
      std::memcpy(&x, p, sizeof x);
      v.ints[k] = x;
      break;
    }
    default: std::memcpy(&v.ints[k], p, sizeof(int64_t)); break;
  }
}

// The value of a tensor, after checking that its data matches its dims;
// nullopt for unsupported types, external data and inconsistent sizes.
std::optional<Value> read_tensor(const onnx::TensorProto& t) {
  Value v;
  v.type = t.data_type();
  if (!is_real_type(v.type) && !is_int_type(v.type)) return std::nullopt;
  if (t.data_location() == onnx::TensorProto::EXTERNAL) return std::nullopt;
  v.dims = tensor_dims(t);
  const auto count = element_count(v.dims);
  if (!count) return std::nullopt;
  v.allocate(*count);
  if (t.has_raw_data()) {
    const size_t bytes = element_bytes(v.type);
    if (t.raw_data().size() != static_cast<size_t>(*count) * bytes) return std::nullopt;
    for (int64_t i = 0; i < *count; ++i) decode_raw(v, i, t.raw_data().data() + static_cast<size_t>(i) * bytes);
    return v;
  }
  const auto check = [&](int size) { return static_cast<int64_t>(size) == *count; };
  switch (v.type) {
    case onnx::TensorProto::FLOAT:
      if (!check(t.float_data_size())) return std::nullopt;
      std::copy(t.float_data().begin(), t.float_data().end(), v.reals.begin());
      break;
    case onnx::TensorProto::DOUBLE:
      if (!check(t.double_data_size())) return std::nullopt;
      std::copy(t.double_data().begin(), t.double_data().end(), v.reals.begin());
      break;
    case onnx::TensorProto::FLOAT16:  // the bits, one per int32
      if (!check(t.int32_data_size())) return std::nullopt;
      for (int i = 0; i < t.int32_data_size(); ++i)
        v.reals[static_cast<size_t>(i)] = half_bits_to_double(static_cast<uint16_t>(t.int32_data(i)));
      break;
    case onnx::TensorProto::INT32:
      if (!check(t.int32_data_size())) return std::nullopt;
      std::copy(t.int32_data().begin(), t.int32_data().end(), v.ints.begin());
      break;
    default:
      if (!check(t.int64_data_size())) return std::nullopt;
      std::copy(t.int64_data().begin(), t.int64_data().end(), v.ints.begin());
      break;
  }
  return v;
}

onnx::TensorProto write_tensor(const std::string& name, const Value& v) {
  onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(v.type);
  for (int64_t d : v.dims) t.add_dims(d);
  std::string raw(static_cast<size_t>(v.size()) * element_bytes(v.type), '\0');
  for (int64_t i = 0; i < v.size(); ++i) {
    char* p = raw.data() + static_cast<size_t>(i) * element_bytes(v.type);
    const size_t k = static_cast<size_t>(i);
    switch (v.type) {
      case onnx::TensorProto::FLOAT: {
        const float f = static_cast<float>(v.reals[k]);
        std::memcpy(p, &f, sizeof f);
        break;
      }
      case onnx::TensorProto::FLOAT16: {
        const _Float16 h = static_cast<_Float16>(v.reals[k]);
        std::memcpy(p, &h, sizeof h);
        break;
      }
      case onnx::TensorProto::DOUBLE: std::memcpy(p, &v.reals[k], sizeof(double)); break;
      case onnx::TensorProto::INT32: {
        const int32_t x = static_cast<int32_t>(v.ints[k]);
        std::memcpy(p, &x, sizeof x);
        break;
      }
      default: std::memcpy(p, &v.ints[k], sizeof(int64_t)); break;
    }
  }
  t.set_raw_data(std::move(raw));
  return t;
}

// Normalizes an axis against `rank`; nullopt if out of range.
std::optional<size_t> normalize_axis(int64_t axis, size_t rank) {
  const auto r = static_cast<int64_t>(rank);
  if (axis < -r || axis >= r) return std::nullopt;
  return static_cast<size_t>(axis < 0 ? axis + r : axis);
}

// A 1-D (or scalar) integer value as a list, e.g. a shape or axes input.
std::optional<std::vector<int64_t>> as_list(const Value* v) {
  if (!v || !is_int_type(v->type) || v->dims.size() > 1) return std::nullopt;
  return v->ints;
}

Dims strides_of(const Dims& dims) {
  Dims strides(dims.size(), 1);
  for (size_t i = dims.size(); i-- > 1;) strides[i - 1] = strides[i] * dims[i];
  return strides;
}

// Visits every element of an `out`-shaped tensor in row-major order, calling
// visit(flat, offset_0, offset_1) where offset_k = base_k + sum(coord * strides_k[axis]).
// Walking an odometer avoids a division per element on weight-sized tensors.
void walk(const Dims& out, const Dims& strides0, const Dims& strides1, int64_t base0, int64_t base1,
          const std::function<void(int64_t, int64_t, int64_t)>& visit) {
  const auto count = element_count(out);
  if (!count || *count == 0) return;
  const size_t rank = out.size();
  Dims coord(rank, 0);
  int64_t o0 = base0, o1 = base1;
  for (int64_t flat = 0; flat < *count; ++flat) {
    visit(flat, o0, o1);
    for (size_t axis = rank; axis-- > 0;) {
      o0 += strides0[axis];
      o1 += strides1[axis];
      if (++coord[axis] < out[axis]) break;
      o0 -= strides0[axis] * out[axis];
      o1 -= strides1[axis] * out[axis];
      coord[axis] = 0;
    }
  }
}

// numpy broadcasting of two shapes; nullopt if they are incompatible.
std::optional<Dims> broadcast_dims(const Dims& a, const Dims& b) {
  const size_t rank = std::max(a.size(), b.size());
  Dims out(rank);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t x = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const int64_t y = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (x != y && x != 1 && y != 1) return std::nullopt;
    out[i] = x == 1 ? y : x;
  }
  if (!element_count(out)) return std::nullopt;
  return out;
}

// Strides that read a `dims`-shaped tensor broadcast to `out` (0 on broadcast axes).
Dims broadcast_strides(const Dims& dims, const Dims& out) {
  const Dims own = strides_of(dims);
  Dims strides(out.size(), 0);
  const size_t shift = out.size() - dims.size();
  for (size_t i = 0; i < dims.size(); ++i) strides[i + shift] = dims[i] == 1 ? 0 : own[i];
  return strides;
}

std::optional<Value> expand_to(const Value& in, const Dims& shape) {
  const auto out_dims = broadcast_dims(in.dims, shape);
  if (!out_dims) return std::nullopt;
  Value out{in.type, *out_dims, {}, {}};
  out.allocate(*element_count(*out_dims));
  if (out.size() == 0) return out;
  const Dims strides = broadcast_strides(in.dims, *out_dims);
  walk(*out_dims, strides, strides, 0, 0, [&](int64_t flat, int64_t at, int64_t) { out.copy_element(flat, in, at); });
  return out;
}

std::optional<Value> cast_to(const Value& in, int32_t to) {
  if (!is_real_type(to) && !is_int_type(to)) return std::nullopt;
  Value out{to, in.dims, {}, {}};
  if (is_real_type(to)) {
    if (in.real())
      out.reals = in.reals;
    else
      out.reals.assign(in.ints.begin(), in.ints.end());
  } else if (in.real()) {
    constexpr double kTwoTo63 = 9223372036854775808.0;
    for (double x : in.reals) {
      // Out-of-range float to int conversions are undefined in ONNX too.
      const double t = std::trunc(x);
      if (!std::isfinite(t) || t < -kTwoTo63 || t >= kTwoTo63) return std::nullopt;
      out.ints.push_back(static_cast<int64_t>(t));
    }
  } else {
    out.ints = in.ints;
  }
  if (!normalize(out)) return std::nullopt;
  return out;
}

double real_binary(const std::string& op, double a, double b) {
  if (op == "Add") return a + b;
  if (op == "Sub") return a - b;
  if (op == "Mul") return a * b;
  return a / b;
}

std::optional<int64_t> int_binary(const std::string& op, int64_t a, int64_t b) {
  int64_t r = 0;
  if (op == "Add") return __builtin_add_overflow(a, b, &r) ? std::nullopt : std::optional<int64_t>(r);
  if (op == "Sub") return __builtin_sub_overflow(a, b, &r) ? std::nullopt : std::optional<int64_t>(r);
  if (op == "Mul") return __builtin_mul_overflow(a, b, &r) ? std::nullopt : std::optional<int64_t>(r);
  if (b == 0 || (a == INT64_MIN && b == -1)) return std::nullopt;
  return a / b;  // truncation toward zero, as ONNX Runtime's integer Div
}

std::optional<Value> arithmetic(const std::string& op, const Value& a, const Value& b) {
  if (a.type != b.type) return std::nullopt;
  const auto out_dims = broadcast_dims(a.dims, b.dims);
  if (!out_dims) return std::nullopt;
  Value out{a.type, *out_dims, {}, {}};
  out.allocate(*element_count(*out_dims));
  if (out.size() == 0) return out;
  bool ok = true;
  walk(*out_dims, broadcast_strides(a.dims, *out_dims), broadcast_strides(b.dims, *out_dims), 0, 0,
       [&](int64_t flat, int64_t i, int64_t j) {
         const auto k = static_cast<size_t>(flat);
         if (out.real()) {
           out.reals[k] = real_binary(op, a.reals[static_cast<size_t>(i)], b.reals[static_cast<size_t>(j)]);
         } else if (const auto r = int_binary(op, a.ints[static_cast<size_t>(i)], b.ints[static_cast<size_t>(j)])) {
           out.ints[k] = *r;
         } else {
           ok = false;
         }
       });
  if (!ok || !normalize(out)) return std::nullopt;
  return out;
}

std::optional<Value> unary(const std::string& op, const Value& in) {
  Value out = in;
  if (op == "Neg") {
    if (out.real()) {
      for (double& x : out.reals) x = -x;
    } else {
      for (int64_t& x : out.ints) {
        if (x == INT64_MIN) return std::nullopt;
        x = -x;
      }
    }
  } else if (!out.real()) {
    return std::nullopt;  // Sqrt and Reciprocal are defined for real types only
  } else {
    for (double& x : out.reals) x = op == "Sqrt" ? std::sqrt(x) : 1.0 / x;
  }
  if (!normalize(out)) return std::nullopt;
  return out;
}

std::optional<Value> concat(const std::vector<const Value*>& parts, int64_t axis_attr) {
  if (parts.empty() || !parts[0]) return std::nullopt;
  const Value& first = *parts[0];
  const auto axis = normalize_axis(axis_attr, first.dims.size());
  if (!axis) return std::nullopt;
  Dims out_dims = first.dims;
  out_dims[*axis] = 0;
  for (const Value* p : parts) {
    if (!p || p->type != first.type || p->dims.size() != first.dims.size()) return std::nullopt;
    for (size_t i = 0; i < out_dims.size(); ++i)
      if (i != *axis && p->dims[i] != first.dims[i]) return std::nullopt;
    if (__builtin_add_overflow(out_dims[*axis], p->dims[*axis], &out_dims[*axis])) return std::nullopt;
  }
  const auto count = element_count(out_dims);
  if (!count) return std::nullopt;
  Value out{first.type, out_dims, {}, {}};
  out.allocate(*count);
  // With elements, every dim is bounded by the count, so these cannot overflow.
  if (*count == 0) return out;
  int64_t outer = 1, inner = 1;
  for (size_t i = 0; i < *axis; ++i) outer *= out_dims[i];
  for (size_t i = *axis + 1; i < out_dims.size(); ++i) inner *= out_dims[i];
  int64_t flat = 0;
  for (int64_t o = 0; o < outer; ++o)
    for (const Value* p : parts) {
      const int64_t block = p->dims[*axis] * inner;
      for (int64_t k = 0; k < block; ++k) out.copy_element(flat++, *p, o * block + k);
    }
  return out;
}

std::optional<Value> reshape(const Value& in, const std::vector<int64_t>& shape, bool allow_zero) {
  Dims out_dims(shape.size());
  std::optional<size_t> inferred;
  int64_t known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    int64_t d = shape[i];
    if (d == 0 && !allow_zero) {
      if (i >= in.dims.size()) return std::nullopt;
      d = in.dims[i];
    }
    if (d == -1) {
      if (inferred) return std::nullopt;
      inferred = i;
      continue;
    }
    if (d < 0 || __builtin_mul_overflow(known, d, &known)) return std::nullopt;
    out_dims[i] = d;
  }
  if (inferred) {
    if (known == 0 || in.size() % known != 0) return std::nullopt;
    out_dims[*inferred] = in.size() / known;
  } else if (known != in.size()) {
    return std::nullopt;
  }
  Value out = in;
  out.dims = out_dims;
  return out;
}

std::optional<Value> unsqueeze(const Value& in, const std::vector<int64_t>& axes) {
  const size_t rank = in.dims.size() + axes.size();
  std::vector<bool> inserted(rank, false);
  for (int64_t a : axes) {
    const auto axis = normalize_axis(a, rank);
    if (!axis || inserted[*axis]) return std::nullopt;
    inserted[*axis] = true;
  }
  Value out = in;
  out.dims.clear();
  size_t next = 0;
  for (size_t i = 0; i < rank; ++i) out.dims.push_back(inserted[i] ? 1 : in.dims[next++]);
  return out;
}

std::optional<Value> squeeze(const Value& in, const std::optional<std::vector<int64_t>>& axes) {
  std::vector<bool> removed(in.dims.size(), false);
  if (axes) {
    for (int64_t a : *axes) {
      const auto axis = normalize_axis(a, in.dims.size());
      if (!axis || in.dims[*axis] != 1) return std::nullopt;
      removed[*axis] = true;
    }
  } else {
    for (size_t i = 0; i < in.dims.size(); ++i) removed[i] = in.dims[i] == 1;
  }
  Value out = in;
  out.dims.clear();
  for (size_t i = 0; i < in.dims.size(); ++i)
    if (!removed[i]) out.dims.push_back(in.dims[i]);
  return out;
}

std::optional<Value> gather(const Value& data, const Value& indices, int64_t axis_attr) {
  if (!is_int_type(indices.type)) return std::nullopt;
  const auto axis = normalize_axis(axis_attr, data.dims.size());
  if (!axis) return std::nullopt;
  const int64_t extent = data.dims[*axis];
  Dims out_dims(data.dims.begin(), data.dims.begin() + static_cast<long>(*axis));
  out_dims.insert(out_dims.end(), indices.dims.begin(), indices.dims.end());
  out_dims.insert(out_dims.end(), data.dims.begin() + static_cast<long>(*axis) + 1, data.dims.end());
  const auto count = element_count(out_dims);
  if (!count) return std::nullopt;
  Value out{data.type, out_dims, {}, {}};
  out.allocate(*count);
  // With elements, every dim but the gathered one is bounded by the count.
  if (*count == 0) return out;
  int64_t outer = 1, inner = 1;
  for (size_t i = 0; i < *axis; ++i) outer *= data.dims[i];
  for (size_t i = *axis + 1; i < data.dims.size(); ++i) inner *= data.dims[i];
  int64_t flat = 0;
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t index : indices.ints) {
      if (index < -extent || index >= extent) return std::nullopt;
      if (index < 0) index += extent;
      for (int64_t k = 0; k < inner; ++k) out.copy_element(flat++, data, (o * extent + index) * inner + k);
    }
  return out;
}

std::optional<Value> slice(const Value& in, const std::vector<int64_t>& starts, const std::vector<int64_t>& ends,
                           std::optional<std::vector<int64_t>> axes, std::optional<std::vector<int64_t>> steps) {
  const size_t rank = in.dims.size();
  if (!axes) {
    axes.emplace();
    for (size_t i = 0; i < starts.size(); ++i) axes->push_back(static_cast<int64_t>(i));
  }
  if (!steps) steps.emplace(starts.size(), 1);
  if (ends.size() != starts.size() || axes->size() != starts.size() || steps->size() != starts.size())
    return std::nullopt;
  Dims out_dims = in.dims, first(rank, 0), step(rank, 1);
  std::vector<bool> seen(rank, false);
  for (size_t k = 0; k < starts.size(); ++k) {
    const auto axis = normalize_axis((*axes)[k], rank);
    const int64_t s = (*steps)[k];
    if (!axis || seen[*axis] || s == 0 || s == INT64_MIN) return std::nullopt;
    seen[*axis] = true;
    const int64_t dim = in.dims[*axis];
    if (dim == 0) {
      out_dims[*axis] = 0;
      continue;
    }
    int64_t begin = starts[k], end = ends[k];
    if (begin < 0) begin += dim;
    if (end < 0) end += dim;
    // The clamping rules of the ONNX Slice specification.
    begin = s > 0 ? std::clamp<int64_t>(begin, 0, dim) : std::clamp<int64_t>(begin, 0, dim - 1);
    end = s > 0 ? std::clamp<int64_t>(end, 0, dim) : std::clamp<int64_t>(end, -1, dim - 1);
    const int64_t span = s > 0 ? end - begin : begin - end;
    const int64_t magnitude = s > 0 ? s : -s;
    out_dims[*axis] = span <= 0 ? 0 : (span + magnitude - 1) / magnitude;
    first[*axis] = begin;
    // A step that takes one element is never applied; dropping it keeps
    // stride * step from overflowing for huge steps.
    step[*axis] = out_dims[*axis] > 1 ? s : 1;
  }
  const auto count = element_count(out_dims);
  if (!count) return std::nullopt;
  Value out{in.type, out_dims, {}, {}};
  out.allocate(*count);
  // An empty input gives an empty output, so the strides below stay bounded.
  if (*count == 0) return out;
  const Dims in_strides = strides_of(in.dims);
  Dims strides(rank);
  int64_t base = 0;
  for (size_t i = 0; i < rank; ++i) {
    strides[i] = in_strides[i] * step[i];
    base += first[i] * in_strides[i];
  }
  walk(out_dims, strides, strides, base, base,
       [&](int64_t flat, int64_t at, int64_t) { out.copy_element(flat, in, at); });
  return out;
}

std::optional<Value> transpose(const Value& in, std::vector<int64_t> perm) {
  const size_t rank = in.dims.size();
  if (perm.empty())
    for (size_t i = rank; i-- > 0;) perm.push_back(static_cast<int64_t>(i));
  if (perm.size() != rank) return std::nullopt;
  std::vector<bool> used(rank, false);
  if (in.size() == 0) return std::nullopt;
  const Dims in_strides = strides_of(in.dims);
  Dims out_dims(rank), strides(rank);
  for (size_t i = 0; i < rank; ++i) {
    const auto axis = normalize_axis(perm[i], rank);
    if (!axis || used[*axis]) return std::nullopt;
    used[*axis] = true;
    out_dims[i] = in.dims[*axis];
    strides[i] = in_strides[*axis];
  }
  Value out{in.type, out_dims, {}, {}};
  out.allocate(in.size());
  walk(out_dims, strides, strides, 0, 0, [&](int64_t flat, int64_t at, int64_t) { out.copy_element(flat, in, at); });
  return out;
}

// The value a Constant node holds, from whichever attribute it uses; an
// attribute of the wrong type makes it not constant rather than zero.
std::optional<Value> constant_value(const onnx::NodeProto& node) {
  const auto typed = [&](const char* name, onnx::AttributeProto::AttributeType type) {
    const onnx::AttributeProto* a = find_attribute(node, name);
    return a && a->type() == type ? a : nullptr;
  };
  if (find_attribute(node, "value")) {
    const auto* a = typed("value", onnx::AttributeProto::TENSOR);
    return a ? read_tensor(a->t()) : std::nullopt;
  }
  if (const auto* a = typed("value_float", onnx::AttributeProto::FLOAT))
    return Value{onnx::TensorProto::FLOAT, {}, {a->f()}, {}};
  if (const auto* a = typed("value_floats", onnx::AttributeProto::FLOATS))
    return Value{onnx::TensorProto::FLOAT, {a->floats_size()}, {a->floats().begin(), a->floats().end()}, {}};
  if (const auto* a = typed("value_int", onnx::AttributeProto::INT))
    return Value{onnx::TensorProto::INT64, {}, {}, {a->i()}};
  if (const auto* a = typed("value_ints", onnx::AttributeProto::INTS))
    return Value{onnx::TensorProto::INT64, {a->ints_size()}, {}, {a->ints().begin(), a->ints().end()}};
  return std::nullopt;
}

// Evaluates tensors of a graph that depend on constants only. Results are
// memoized across calls, so sub-graphs shared by several layers are
// evaluated once.
class ConstantEvaluator {
 public:
  explicit ConstantEvaluator(const onnx::GraphProto& graph) {
    for (const auto& t : graph.initializer()) initializers_.emplace(t.name(), &t);
    for (const auto& n : graph.node())
      for (const auto& out : n.output()) {
        // A tensor with two producers is malformed: it is never constant.
        const auto [it, fresh] = producers_.emplace(out, &n);
        if (!fresh) it->second = nullptr;
      }
    for (const auto* list : {&graph.input(), &graph.value_info(), &graph.output()})
      for (const auto& v : *list)
        if (v.type().has_tensor_type()) declared_.emplace(v.name(), &v.type().tensor_type());
  }

  // The value of `tensor`, or nullptr if it is not computed from constants
  // alone (or cannot be evaluated within the bounds).
  const Value* evaluate(const std::string& tensor) {
    std::vector<std::string> stack{tensor};
    std::unordered_set<std::string> expanded;
    while (!stack.empty()) {
      const std::string current = stack.back();
      if (done_.count(current)) {
        stack.pop_back();
        continue;
      }
      const onnx::NodeProto* producer = nullptr;
      if (const auto it = initializers_.find(current); it != initializers_.end()) {
        finish(current, read_tensor(*it->second));
        if (done_.at(current)) initializers_read_.insert(current);
        stack.pop_back();
        continue;
      }
      if (const auto it = producers_.find(current); it != producers_.end()) producer = it->second;
      if (!producer) {
        finish(current, std::nullopt);
        stack.pop_back();
        continue;
      }
      if (expanded.insert(current).second) {
        const auto deps = dependencies(*producer);
        // An input expanded but unfinished is an ancestor on the stack: the
        // graph has a cycle, and nothing on it is constant.
        const auto on_stack = [&](const std::string& d) { return !done_.count(d) && expanded.count(d); };
        if (std::any_of(deps.begin(), deps.end(), on_stack)) {
          finish(current, std::nullopt);
          stack.pop_back();
          continue;
        }
        for (const std::string& dep : deps)
          if (!done_.count(dep)) stack.push_back(dep);
        continue;
      }
      finish(current, producer->output_size() == 1 ? compute(*producer) : std::nullopt);
      stack.pop_back();
    }
    const auto& result = done_.at(tensor);
    return result ? &*result : nullptr;
  }

  // Initializers read while evaluating, which folding may leave unused.
  const std::set<std::string>& initializers_read() const { return initializers_read_; }

 private:
  void finish(const std::string& tensor, std::optional<Value> value) {
    if (value) {
      budget_ -= value->size();
      if (budget_ < 0) value.reset();
    }
    done_[tensor] = std::move(value);
  }

  const Value* input(const onnx::NodeProto& node, int index) const {
    if (index >= node.input_size() || node.input(index).empty()) return nullptr;
    const auto it = done_.find(node.input(index));
    return it != done_.end() && it->second ? &*it->second : nullptr;
  }

  // The element type of `tensor` known without evaluating it (0 if unknown).
  int32_t declared_type(const std::string& tensor) const {
    if (const auto it = initializers_.find(tensor); it != initializers_.end()) return it->second->data_type();
    if (const auto it = declared_.find(tensor); it != declared_.end()) return it->second->elem_type();
    return 0;
  }

  // The dims of `tensor` known without evaluating it; -1 marks a dim that is
  // symbolic. nullopt if not even the rank is known.
  std::optional<Dims> declared_dims(const std::string& tensor) const {
    if (const auto it = initializers_.find(tensor); it != initializers_.end()) {
      Dims dims = tensor_dims(*it->second);
      for (int64_t& d : dims) d = std::max<int64_t>(d, -1);
      return dims;
    }
    const auto it = declared_.find(tensor);
    if (it == declared_.end() || !it->second->has_shape()) return std::nullopt;
    Dims dims;
    for (const auto& d : it->second->shape().dim())
      dims.push_back(d.has_dim_value() && d.dim_value() >= 0 ? d.dim_value() : -1);
    return dims;
  }

  // The [start, end) range of a Shape node, clamped to `rank`.
  static std::pair<size_t, size_t> shape_range(const onnx::NodeProto& node, size_t rank) {
    const auto r = static_cast<int64_t>(rank);
    int64_t start = get_int_attribute(node, "start", 0), end = get_int_attribute(node, "end", r);
    if (start < 0) start += r;
    if (end < 0) end += r;
    start = std::clamp<int64_t>(start, 0, r);
    end = std::clamp<int64_t>(end, start, r);
    return {static_cast<size_t>(start), static_cast<size_t>(end)};
  }

  // The dims a Shape node reports, when the declared shape settles them.
  std::optional<Dims> declared_shape_output(const onnx::NodeProto& node) const {
    if (node.input_size() < 1) return std::nullopt;
    const auto dims = declared_dims(node.input(0));
    if (!dims) return std::nullopt;
    const auto [start, end] = shape_range(node, dims->size());
    Dims out(dims->begin() + static_cast<long>(start), dims->begin() + static_cast<long>(end));
    if (std::any_of(out.begin(), out.end(), [](int64_t d) { return d < 0; })) return std::nullopt;
    return out;
  }

  // The inputs whose values `node` needs. Shape and CastLike read only the
  // shape or type of an input when that is declared.
  std::vector<std::string> dependencies(const onnx::NodeProto& node) const {
    const std::string& op = node.op_type();
    if (op == "Constant") return {};
    if (op == "Shape" && declared_shape_output(node)) return {};
    std::vector<std::string> deps;
    for (int i = 0; i < node.input_size(); ++i) {
      if (node.input(i).empty()) continue;
      if (op == "CastLike" && i == 1 && declared_type(node.input(1)) != 0) continue;
      deps.push_back(node.input(i));
    }
    return deps;
  }

  // Axes from the input (opset 13 and later) or the attribute (before).
  std::optional<std::vector<int64_t>> axes_of(const onnx::NodeProto& node) const {
    if (node.input_size() > 1 && !node.input(1).empty()) return as_list(input(node, 1));
    if (find_attribute(node, "axes")) return get_ints_attribute(node, "axes");
    return std::nullopt;
  }

  std::optional<Value> compute(const onnx::NodeProto& node) const {
    const std::string& op = node.op_type();
    if (op == "Constant") return constant_value(node);
    if (op == "Shape") {
      std::optional<Dims> dims = declared_shape_output(node);
      if (!dims) {
        const Value* in = input(node, 0);
        if (!in) return std::nullopt;
        const auto [start, end] = shape_range(node, in->dims.size());
        dims.emplace(in->dims.begin() + static_cast<long>(start), in->dims.begin() + static_cast<long>(end));
      }
      return Value{onnx::TensorProto::INT64, {static_cast<int64_t>(dims->size())}, {}, *dims};
    }
    if (op == "ConstantOfShape") {
      const auto shape = as_list(input(node, 0));
      if (!shape) return std::nullopt;
      Value fill{onnx::TensorProto::FLOAT, {}, {0.0}, {}};
      if (const auto* a = find_attribute(node, "value")) {
        const auto v = a->has_t() ? read_tensor(a->t()) : std::nullopt;
        if (!v || v->size() != 1) return std::nullopt;
        fill = *v;
        fill.dims.clear();
      }
      return expand_to(fill, *shape);
    }
    if (op == "Concat") {
      std::vector<const Value*> parts;
      for (int i = 0; i < node.input_size(); ++i) parts.push_back(input(node, i));
      return concat(parts, get_int_attribute(node, "axis", 0));
    }
    const Value* a = input(node, 0);
    if (!a) return std::nullopt;
    if (op == "Identity") return *a;
    if (op == "Cast") return cast_to(*a, static_cast<int32_t>(get_int_attribute(node, "to", 0)));
    if (op == "CastLike") {
      int32_t to = node.input_size() > 1 ? declared_type(node.input(1)) : 0;
      if (to == 0) {
        const Value* target = input(node, 1);
        if (!target) return std::nullopt;
        to = target->type;
      }
      return cast_to(*a, to);
    }
    if (op == "Neg" || op == "Sqrt" || op == "Reciprocal") return unary(op, *a);
    if (op == "Transpose") return transpose(*a, get_ints_attribute(node, "perm"));
    if (op == "Unsqueeze") {
      const auto axes = axes_of(node);
      return axes ? unsqueeze(*a, *axes) : std::nullopt;
    }
    if (op == "Squeeze") {
      const bool has_axes_input = node.input_size() > 1 && !node.input(1).empty();
      const auto axes = axes_of(node);
      if (has_axes_input && !axes) return std::nullopt;
      return squeeze(*a, axes);
    }
    if (op == "Slice") {
      if (node.input_size() < 3)  // opset 1: attributes
        return slice(*a, get_ints_attribute(node, "starts"), get_ints_attribute(node, "ends"),
                     find_attribute(node, "axes") ? std::optional(get_ints_attribute(node, "axes")) : std::nullopt,
                     std::nullopt);
      const auto starts = as_list(input(node, 1)), ends = as_list(input(node, 2));
      const bool has_axes = node.input_size() > 3 && !node.input(3).empty();
      const bool has_steps = node.input_size() > 4 && !node.input(4).empty();
      const auto axes = has_axes ? as_list(input(node, 3)) : std::nullopt;
      const auto steps = has_steps ? as_list(input(node, 4)) : std::nullopt;
      if (!starts || !ends || (has_axes && !axes) || (has_steps && !steps)) return std::nullopt;
      return slice(*a, *starts, *ends, axes, steps);
    }
    const Value* b = input(node, 1);
    if (!b) return std::nullopt;
    if (op == "Expand") {
      const auto shape = as_list(b);
      return shape ? expand_to(*a, *shape) : std::nullopt;
    }
    if (op == "Reshape") {
      const auto shape = as_list(b);
      return shape ? reshape(*a, *shape, get_int_attribute(node, "allowzero", 0) != 0) : std::nullopt;
    }
    if (op == "Gather") return gather(*a, *b, get_int_attribute(node, "axis", 0));
    if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div") return arithmetic(op, *a, *b);
    return std::nullopt;
  }

  std::unordered_map<std::string, const onnx::TensorProto*> initializers_;
  std::unordered_map<std::string, const onnx::NodeProto*> producers_;
  std::unordered_map<std::string, const onnx::TypeProto_Tensor*> declared_;
  std::unordered_map<std::string, std::optional<Value>> done_;
  std::set<std::string> initializers_read_;
  int64_t budget_ = kMaxTotalElements;
};

// The inputs of a layer op that must be constant, with the suffix a folded
// value is named with (torch's parameter names, as nodes carry module names).
std::vector<std::pair<int, const char*>> constant_slots(const std::string& op) {
  if (op == "BatchNormalization") return {{1, "weight"}, {2, "bias"}, {3, "running_mean"}, {4, "running_var"}};
  std::vector<std::pair<int, const char*>> slots;
  const OpKind* kind = find_op_kind(op);
  if (!kind) return slots;
  // torch's LSTM/GRU export reorders the gates of W, R and B by Slice and
  // Concat of the parameters: the folded tensors are in ONNX gate order.
  if (kind->recurrent_input >= 0) {
    slots.emplace_back(kind->weight_input, "weight_ih");
    slots.emplace_back(kind->recurrent_input, "weight_hh");
    slots.emplace_back(kind->bias_input, "bias");
    return slots;
  }
  if (kind->weight_input >= 0) slots.emplace_back(kind->weight_input, "weight");
  if (kind->bias_input >= 0) slots.emplace_back(kind->bias_input, "bias");
  return slots;
}

}  // namespace

void fold_constant_inputs(onnx::GraphProto& graph) {
  ConstantEvaluator evaluator(graph);
  std::unordered_set<std::string> names;
  for (const auto& t : graph.initializer()) names.insert(t.name());
  for (const auto& n : graph.node()) names.insert(n.output().begin(), n.output().end());
  for (const auto& v : graph.input()) names.insert(v.name());
  // A computed tensor feeding several layers becomes one initializer.
  std::unordered_map<std::string, std::string> folded;

  for (auto& node : *graph.mutable_node()) {
    for (const auto& [index, suffix] : constant_slots(node.op_type())) {
      if (index >= node.input_size() || node.input(index).empty()) continue;
      const std::string tensor = node.input(index);
      if (find_initializer(graph, tensor)) continue;
      if (const auto it = folded.find(tensor); it != folded.end()) {
        node.set_input(index, it->second);
        continue;
      }
      const Value* value = evaluator.evaluate(tensor);
      if (!value || !value->real()) continue;
      // An all-zero computed bias is what torch exports for bias=False: drop
      // it, as AMCT's exports have none there (Conv+BN fusion adds one when
      // it needs it). A bias that merely aliases a stored tensor (the
      // exporter de-duplicates equal parameters through Identity) belongs to
      // a module with a bias, which keeps it even when it is zero.
      const OpKind* kind = find_op_kind(node.op_type());
      const bool is_bias = kind && kind->recurrent_input < 0 && index == kind->bias_input;
      if (is_bias && node.input_size() == 3 && !resolve_constant(graph, tensor) &&
          std::all_of(value->reals.begin(), value->reals.end(), [](double v) { return v == 0.0; })) {
        node.mutable_input()->RemoveLast();
        continue;
      }
      const std::string base = node.name() + "." + suffix;
      std::string name = base;
      for (int k = 1; names.count(name); ++k) name = base + "_" + std::to_string(k);
      names.insert(name);
      *graph.add_initializer() = write_tensor(name, *value);
      node.set_input(index, name);
      folded.emplace(tensor, name);
    }
  }
  remove_dead_nodes(graph);

  // Initializers only the removed sub-graphs read (e.g. the source of a
  // folded Transpose) would otherwise be carried as dead weight.
  std::unordered_set<std::string> still_read;
  for (const auto& o : graph.output()) still_read.insert(o.name());
  // Nodes of If/Loop bodies may read outer initializers too.
  std::vector<const onnx::GraphProto*> graphs{&graph};
  while (!graphs.empty()) {
    const onnx::GraphProto* g = graphs.back();
    graphs.pop_back();
    for (const auto& n : g->node()) {
      still_read.insert(n.input().begin(), n.input().end());
      for (const auto& a : n.attribute()) {
        if (a.has_g()) graphs.push_back(&a.g());
        for (const auto& body : a.graphs()) graphs.push_back(&body);
      }
    }
  }
  for (const auto& v : graph.input()) still_read.insert(v.name());
  for (const std::string& name : evaluator.initializers_read())
    if (!still_read.count(name)) remove_initializer(graph, name);
}

}  // namespace amct
