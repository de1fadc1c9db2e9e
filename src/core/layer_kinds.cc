// The rows of the layer-kind table (see include/amct/layer_kind.h and
// docs/amct-reference.md#supported-layers for the capability facts).
#include <algorithm>

#include "amct/layer_kind.h"

namespace amct {
namespace {

constexpr OpKind kOps[] = {
    // op               weight recur  bias  layout                     ranks  per-ch fusable
    {"Conv",            1,     -1,    2,    WeightLayout::kOutFirst,   3, 5,  true,  true},
    {"ConvTranspose",   1,     -1,    2,    WeightLayout::kDeconv,     3, 5,  true,  false},
    {"Gemm",            1,     -1,    2,    WeightLayout::kGemm,       2, 2,  false, false},
    {"MatMul",          1,     -1,    -1,   WeightLayout::kInOut,      2, 2,  false, false},
    {"AveragePool",     -1,    -1,    -1,   WeightLayout::kNone,       0, 0,  false, false},
    {"LSTM",            1,     2,     3,    WeightLayout::kGates,      3, 3,  true,  false},
    {"GRU",             1,     2,     3,    WeightLayout::kGates,      3, 3,  true,  false},
};

constexpr std::string_view kConvOps[] = {"Conv"};
constexpr std::string_view kDeconvOps[] = {"ConvTranspose"};
constexpr std::string_view kLinearOps[] = {"Gemm", "MatMul"};
constexpr std::string_view kPoolOps[] = {"AveragePool"};
constexpr std::string_view kLstmOps[] = {"LSTM"};
constexpr std::string_view kGruOps[] = {"GRU"};

constexpr ModuleKind kModules[] = {
    // torch type        ops         per-ch int16  +bias  int6/7 ada    dmq    sym    fuse   padding
    {"Conv2d",          kConvOps,   true,  true,  false, true,  true,  true,  false, true,  true},
    {"Conv3d",          kConvOps,   true,  false, false, false, false, true,  true,  true,  true},
    {"Linear",          kLinearOps, false, true,  true,  false, true,  true,  false, false, false},
    {"ConvTranspose2d", kDeconvOps, true,  true,  false, false, true,  true,  false, false, true},
    {"AvgPool2d",       kPoolOps,   false, false, false, false, false, false, false, false, false},
    {"Conv1d",          kConvOps,   true,  true,  false, false, false, true,  false, true,  true},
    {"ConvTranspose1d", kDeconvOps, true,  true,  false, false, false, true,  false, false, true},
    {"GRU",             kGruOps,    true,  true,  false, false, false, false, false, false, false},
    {"LSTM",            kLstmOps,   true,  true,  false, false, false, false, false, false, false},
};

}  // namespace

std::span<const ModuleKind> module_kinds() { return kModules; }
std::span<const OpKind> op_kinds() { return kOps; }

const ModuleKind* find_module_kind(std::string_view torch_type) {
  for (const ModuleKind& kind : kModules)
    if (kind.torch_type == torch_type) return &kind;
  return nullptr;
}

const OpKind* find_op_kind(std::string_view op_type) {
  for (const OpKind& kind : kOps)
    if (kind.op_type == op_type) return &kind;
  return nullptr;
}

bool exports_to(const ModuleKind& kind, std::string_view op_type) {
  return std::find(kind.op_types.begin(), kind.op_types.end(), op_type) != kind.op_types.end();
}

bool has_weight(const ModuleKind& kind) {
  return std::all_of(kind.op_types.begin(), kind.op_types.end(),
                     [](std::string_view op) { return find_op_kind(op)->weight_input >= 0; });
}

bool is_recurrent(const ModuleKind& kind) {
  return std::any_of(kind.op_types.begin(), kind.op_types.end(),
                     [](std::string_view op) { return find_op_kind(op)->recurrent_input >= 0; });
}

}  // namespace amct
