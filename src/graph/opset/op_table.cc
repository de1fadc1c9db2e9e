// The default-domain ops the converter knows, with the opset versions at
// which their meaning or signature changed between 11 and 21. Versions that
// only added element types are left out: a float graph means the same on
// both sides of them. Ops missing here are refused, never passed blindly.
#include <algorithm>
#include <utility>

#include "rewrite.h"

namespace amct::opset {

namespace {

// Ops whose float semantics did not change from opset 11 to 21 (1 = older than 11).
constexpr std::pair<std::string_view, int64_t> kUnchanged[] = {
    {"Abs", 1}, {"Acos", 1}, {"Acosh", 1}, {"Add", 1}, {"And", 1}, {"Asin", 1}, {"Asinh", 1}, {"Atan", 1},
    {"Atanh", 1}, {"BitShift", 11}, {"Ceil", 1}, {"Clip", 1}, {"Compress", 1}, {"Concat", 1},
    {"ConcatFromSequence", 11}, {"ConstantOfShape", 1}, {"Conv", 1}, {"ConvInteger", 1}, {"ConvTranspose", 1},
    {"Cos", 1}, {"Cosh", 1}, {"CumSum", 11}, {"DepthToSpace", 1}, {"Det", 11}, {"Div", 1},
    {"DynamicQuantizeLinear", 11}, {"Elu", 1}, {"Equal", 1}, {"Erf", 1}, {"Exp", 1}, {"Expand", 1},
    {"EyeLike", 1}, {"Flatten", 1}, {"Floor", 1}, {"Gather", 1}, {"GatherElements", 11}, {"Gemm", 1},
    {"GlobalAveragePool", 1}, {"GlobalLpPool", 1}, {"GlobalMaxPool", 1}, {"Greater", 1}, {"HardSigmoid", 1},
    {"Identity", 1}, {"If", 1}, {"InstanceNormalization", 1}, {"IsInf", 1}, {"IsNaN", 1}, {"LRN", 1},
    {"LeakyRelu", 1}, {"Less", 1}, {"Log", 1}, {"Loop", 1}, {"LpNormalization", 1}, {"MatMul", 1},
    {"MatMulInteger", 1}, {"MaxPool", 1}, {"MaxRoiPool", 1}, {"MaxUnpool", 1}, {"Mean", 1},
    {"MeanVarianceNormalization", 1}, {"Mod", 1}, {"Mul", 1}, {"Multinomial", 1}, {"Neg", 1},
    {"NonMaxSuppression", 1}, {"NonZero", 1}, {"Not", 1}, {"OneHot", 1}, {"Or", 1}, {"PRelu", 1}, {"Pow", 1},
    {"QLinearConv", 1}, {"QLinearMatMul", 1}, {"RandomNormal", 1}, {"RandomNormalLike", 1}, {"RandomUniform", 1},
    {"RandomUniformLike", 1}, {"Range", 11}, {"Reciprocal", 1}, {"Relu", 1}, {"ReverseSequence", 1},
    {"Round", 11}, {"Scan", 1}, {"Selu", 1}, {"SequenceAt", 11}, {"SequenceConstruct", 11},
    {"SequenceEmpty", 11}, {"SequenceErase", 11}, {"SequenceInsert", 11}, {"SequenceLength", 11},
    {"Shrink", 1}, {"Sigmoid", 1}, {"Sign", 1}, {"Sin", 1}, {"Sinh", 1}, {"Size", 1}, {"Slice", 1},
    {"Softplus", 1}, {"Softsign", 1}, {"SpaceToDepth", 1}, {"SplitToSequence", 11}, {"Sqrt", 1},
    {"StringNormalizer", 1}, {"Sub", 1}, {"Sum", 1}, {"Tan", 1}, {"Tanh", 1}, {"TfIdfVectorizer", 1},
    {"ThresholdedRelu", 1}, {"Tile", 1}, {"TopK", 1}, {"Transpose", 1}, {"Unique", 11}, {"Where", 1},
    {"Xor", 1},
};

std::vector<OpRule> build_rules() {
  std::vector<OpRule> rules;
  for (const auto& [op, since] : kUnchanged) rules.push_back({op, since, {}});

  const std::vector<Change> reduce18{{18, reduce_axes_to_attribute, reduce_axes_to_input}};
  for (std::string_view op : {"ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSumSquare", "ReduceL1",
                              "ReduceL2", "ReduceLogSum", "ReduceLogSumExp"})
    rules.push_back({op, 1, reduce18});
  rules.push_back({"ReduceSum", 1, {{13, reduce_axes_to_attribute, reduce_axes_to_input}}});
  rules.push_back({"Squeeze", 1, {{13, squeeze_axes_to_attribute, squeeze_axes_to_input}}});
  rules.push_back({"Unsqueeze", 1, {{13, squeeze_axes_to_attribute, squeeze_axes_to_input}}});
  rules.push_back(
      {"Split", 1, {{13, split_to_attribute, split_to_input}, {18, split_drop_num_outputs, split_add_num_outputs}}});
  for (std::string_view op : {"Softmax", "LogSoftmax", "Hardmax"})
    rules.push_back({op, 1, {{13, softmax_to_coerced, softmax_to_axis}}});

  rules.push_back({"LayerNormalization", 17, {{17, decompose_layer_normalization, nullptr}}});
  rules.push_back({"Gelu", 20, {{20, decompose_gelu, nullptr}}});
  rules.push_back({"HardSwish", 14, {{14, decompose_hard_swish, nullptr}}});
  rules.push_back({"Mish", 18, {{18, decompose_mish, nullptr}}});
  rules.push_back({"GreaterOrEqual", 12, {{12, decompose_greater_or_equal, nullptr}}});
  rules.push_back({"LessOrEqual", 12, {{12, decompose_less_or_equal, nullptr}}});
  // Max/Min-12 added integer types, which shape arithmetic uses (BERT's mask).
  for (std::string_view op : {"Max", "Min"}) rules.push_back({op, 1, {{12, integer_min_max_through_double, nullptr}}});
  rules.push_back({"CastLike", 15, {{15, cast_like_to_cast, nullptr}, {19, drop_saturate, nullptr}}});
  rules.push_back({"Shape", 1, {{15, shape_slice_to_slice, nullptr}}});

  rules.push_back({"Constant", 1, {{12, constant_to_value_tensor, nullptr}}});
  rules.push_back({"Dropout", 1, {{12, dropout_to_attribute, dropout_to_input}}});
  rules.push_back({"Resize", 10, {{13, resize_fill_roi_scales, resize_reject_tf_half_pixel},
                                  {18, resize_drop_18_attributes, nullptr},
                                  {19, resize_reject_symmetric, nullptr}}});
  rules.push_back({"Pad", 1, {{18, pad_drop_axes, nullptr}, {19, pad_reject_wrap, nullptr}}});
  rules.push_back({"Reshape", 1, {{14, reshape_drop_allowzero, nullptr}}});
  rules.push_back({"BatchNormalization", 1, {{14, batch_norm_drop_training_mode, batch_norm_reject_training_outputs}}});
  rules.push_back({"Cast", 1, {{19, drop_saturate, nullptr}}});
  for (std::string_view op : {"QuantizeLinear", "DequantizeLinear"})
    rules.push_back({op, 10, {{13, quantize_per_tensor_only, nullptr},
                              {19, drop_saturate, nullptr},
                              {21, quantize_drop_21_attributes, nullptr}}});
  for (std::string_view op : {"ScatterND", "ScatterElements"})
    rules.push_back({op, 11, {{16, scatter_drop_reduction, nullptr}, {18, scatter_reject_min_max, nullptr}}});
  rules.push_back({"RoiAlign", 10, {{16, roi_align_drop_mode, roi_align_set_mode}}});
  rules.push_back({"GridSample", 16, {{20, grid_sample_to_bi_modes, grid_sample_to_n_modes}}});
  rules.push_back({"AveragePool", 1, {{19, pool_drop_dilations, nullptr}}});
  rules.push_back({"LpPool", 1, {{18, lp_pool_drop_18_attributes, nullptr}}});
  for (std::string_view op : {"ArgMax", "ArgMin"}) rules.push_back({op, 1, {{12, drop_select_last_index, nullptr}}});
  rules.push_back({"GatherND", 11, {{12, drop_batch_dims, nullptr}}});
  for (std::string_view op : {"LSTM", "GRU", "RNN"}) rules.push_back({op, 1, {{14, drop_layout, nullptr}}});

  // Ops with no form below the opset that introduced them.
  for (const auto& [op, since] : std::initializer_list<std::pair<std::string_view, int64_t>>{
           {"Einsum", 12}, {"Celu", 12}, {"NegativeLogLikelihoodLoss", 12}, {"SoftmaxCrossEntropyLoss", 12},
           {"Trilu", 14}, {"Bernoulli", 15}, {"BitwiseAnd", 18}, {"BitwiseOr", 18}, {"BitwiseXor", 18},
           {"BitwiseNot", 18}, {"CenterCropPad", 18}, {"Col2Im", 18}, {"DeformConv", 19}, {"AffineGrid", 20}})
    rules.push_back({op, since, {}});
  // GroupNormalization-18 scales per group, -21 per channel: neither form converts to the other here.
  rules.push_back({"GroupNormalization", 18, {{21, nullptr, reject_up}}});

  std::sort(rules.begin(), rules.end(), [](const OpRule& a, const OpRule& b) { return a.op < b.op; });
  return rules;
}

}  // namespace

const OpRule* find_rule(std::string_view op) {
  static const std::vector<OpRule> rules = build_rules();
  auto it = std::lower_bound(rules.begin(), rules.end(), op,
                             [](const OpRule& r, std::string_view o) { return r.op < o; });
  return it != rules.end() && it->op == op ? &*it : nullptr;
}

}  // namespace amct::opset
