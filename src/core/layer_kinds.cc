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
    // Gemm / MatMul: per channel only under linear_channel_wise (beyond AMCT).
    {"Gemm",            1,     -1,    2,    WeightLayout::kGemm,       2, 2,  true,  false},
    {"MatMul",          1,     -1,    -1,   WeightLayout::kInOut,      2, 2,  true,  false},
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

constexpr std::string_view kConv1dAten[] = {"aten.conv1d"};
constexpr std::string_view kConv2dAten[] = {"aten.conv2d"};
constexpr std::string_view kConv3dAten[] = {"aten.conv3d"};
constexpr std::string_view kDeconv1dAten[] = {"aten.conv_transpose1d"};
constexpr std::string_view kDeconv2dAten[] = {"aten.conv_transpose2d"};
constexpr std::string_view kLinearAten[] = {"aten.linear"};
constexpr std::string_view kAvgPool2dAten[] = {"aten.avg_pool2d"};
constexpr std::string_view kLstmAten[] = {"aten.lstm"};
constexpr std::string_view kGruAten[] = {"aten.gru"};

constexpr ModuleKind kModules[] = {
    // torch type        ops          aten ops        per-ch int16  +bias  int6/7 ada    dmq    sym    fuse   padding
    {"Conv2d",           kConvOps,    kConv2dAten,    true,  true,  false, true,  true,  true,  false, true,  true},
    {"Conv3d",           kConvOps,    kConv3dAten,    true,  false, false, false, false, true,  true,  true,  true},
    {"Linear",           kLinearOps,  kLinearAten,    false, true,  true,  false, true,  true,  false, false, false},
    {"ConvTranspose2d",  kDeconvOps,  kDeconv2dAten,  true,  true,  false, false, true,  true,  false, false, true},
    {"AvgPool2d",        kPoolOps,    kAvgPool2dAten, false, false, false, false, false, false, false, false, false},
    {"Conv1d",           kConvOps,    kConv1dAten,    true,  true,  false, false, false, true,  false, true,  true},
    {"ConvTranspose1d",  kDeconvOps,  kDeconv1dAten,  true,  true,  false, false, false, true,  false, false, true},
    {"GRU",              kGruOps,     kGruAten,       true,  true,  false, false, false, false, false, false, false},
    {"LSTM",             kLstmOps,    kLstmAten,      true,  true,  false, false, false, false, false, false, false},
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

bool runs_aten_op(const ModuleKind& kind, std::string_view aten_op) {
  return std::find(kind.aten_ops.begin(), kind.aten_ops.end(), aten_op) != kind.aten_ops.end();
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
