// The one ordered list of save_model passes (docs/amct-reference.md#save_model steps 4, 6 and 7, and
// the QDQ model).
// AMCT's MultQuant pass has no work here (its trigger list is empty in
// AMCT's PyTorch flow).
#include "amct/save_passes.h"

namespace amct {
namespace {

constexpr SavePass kPasses[] = {
    {"GemmTransBOptimize", SaveStage::kCommon, gemm_trans_b_pass},
    {"ApplyDMQBalancer", SaveStage::kCommon, apply_dmq_balancer_pass},
    {"InsertQuant", SaveStage::kCommon, insert_quant_pass},
    {"InsertWeightQuant", SaveStage::kCommon, insert_weight_quant_pass},
    {"InsertDequant", SaveStage::kCommon, insert_dequant_pass},
    {"InsertBiasQuant", SaveStage::kCommon, insert_bias_quant_pass},
    {"QuantFusion", SaveStage::kCommon, quant_fusion_pass},
    {"PackInt4Weight", SaveStage::kDeploy, pack_int4_weight_pass},
    {"ReplaceRNN", SaveStage::kDeploy, replace_rnn_pass},
    {"RemoveOpDataType", SaveStage::kDeploy, remove_op_data_type_pass},
    {"InsertRNNFakeQuant", SaveStage::kFakeQuant, insert_rnn_fake_quant_pass},
    {"ReplaceQuant", SaveStage::kFakeQuant, replace_quant_pass},
    {"WeightFakequant", SaveStage::kFakeQuant, weight_fakequant_pass},
    {"ReplaceDequant", SaveStage::kFakeQuant, replace_dequant_pass},
    {"ReplaceAntiQuant", SaveStage::kFakeQuant, replace_anti_quant_pass},
    {"ReplaceBiasQuant", SaveStage::kFakeQuant, replace_bias_quant_pass},
    {"RemoveOpDataType", SaveStage::kFakeQuant, remove_op_data_type_pass},
    {"ApplyDMQBalancer", SaveStage::kQdq, apply_dmq_balancer_pass},
    {"QdqDeconvToConv", SaveStage::kQdq, qdq_deconv_to_conv_pass},
    {"QdqOutput", SaveStage::kQdq, qdq_output_pass},
    {"QdqInput", SaveStage::kQdq, qdq_input_pass},
    {"QdqGlobalPool", SaveStage::kQdq, qdq_global_pool_pass},
    {"QdqTensor", SaveStage::kQdq, qdq_tensor_pass},
    {"QdqWeight", SaveStage::kQdq, qdq_weight_pass},
    {"QdqFoldPad", SaveStage::kQdq, qdq_fold_pad_pass},
    {"RemoveOpDataType", SaveStage::kQdq, remove_op_data_type_pass},
};

}  // namespace

std::span<const SavePass> save_passes() { return kPasses; }

void run_save_passes(onnx::GraphProto& graph, const QuantPlan& plan, SaveStage stage) {
  for (const SavePass& pass : kPasses)
    if (pass.stage == stage) pass.run(graph, plan);
}

}  // namespace amct
