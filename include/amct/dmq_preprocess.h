// quantize_preprocess's engine (docs/amct-reference.md#dmq-balancing): finds
// the DMQ layers of a config, and a recorder that turns the layer inputs of
// the balancing model's forwards into the tensor_balance_factor record.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "amct/layers.h"
#include "onnx/onnx.pb.h"

namespace amct {

struct BalanceLayer {
  std::string name;
  std::string module_type;
  float migration_strength = 0.5f;
  int64_t weight_rank = 2;
  bool channels_last = false;     // Linear: the input is [..., Cin]; convolutions: [N, Cin, ...] or [Cin, ...]
  std::vector<float> weight_max;  // max|W_c| per input channel of the (BN-fused) weight

  int64_t channels() const { return static_cast<int64_t>(weight_max.size()); }
};

// Collects the per-input-channel maxima of every DMQ layer's input and writes
// the record once every layer has run, i.e. after the first complete
// forward. Later forwards are ignored, as AMCT never rewrites the file, except
// that a failed write is retried by the next forward. (Taking the maxima over
// several forwards was measured on an outlier MLP and was not better; see
// docs/amct-reference.md#dmq-balancing.) Thread-safe.
class BalanceRecorder {
 public:
  BalanceRecorder(std::string record_file, std::vector<BalanceLayer> layers);

  size_t layer_count() const { return layers_.size(); }
  const BalanceLayer& layer(size_t index) const { return layers_.at(index).info; }
  // Whether layer `index` has reported its input.
  bool observed(size_t index) const;
  bool finished() const;

  // Feeds one forward's input of layer `index`, a float32 tensor of `shape`
  // (not copied). Returns true when this call wrote the record file.
  bool observe(size_t index, std::span<const float> activation, std::span<const int64_t> shape);

  // The factors written to the record; empty until finished().
  std::vector<float> factors(size_t index) const;

 private:
  struct Layer {
    BalanceLayer info;
    std::vector<float> activation_max;
    bool observed = false;
    std::vector<float> factors;
  };

  void write_record_locked();

  std::string record_file_;
  std::vector<Layer> layers_;
  bool written_ = false;
  mutable std::mutex mutex_;
};

// Checks the arguments, exports nothing: `onnx_bytes` is the model exported by
// the front end. Parses the config, refuses one without an enabled DMQ layer,
// fuses Conv+BN on the graph when do_fusion is set (so the factors see the
// fused weights that quantize_model will scale), recreates `record_file`
// empty and returns the recorder of the DMQ layers in named_modules() order.
// `notes` receives what the user should know.
std::unique_ptr<BalanceRecorder> quantize_preprocess(const std::string& config_file, const std::string& record_file,
                                                     onnx::ModelProto exported, std::vector<ModuleInfo> modules,
                                                     std::vector<std::string>& notes);

}  // namespace amct
