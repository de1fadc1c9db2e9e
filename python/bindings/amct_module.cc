// The nanobind extension amct_pytorch._amct: exposes the C++ core. No logic
// lives here: arguments are converted, the core is called, errors are mapped
// to Python exceptions in one place.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include "amct/auto_calibration.h"
#include "amct/bin_data.h"
#include "amct/calibrator.h"
#include "amct/dmq_preprocess.h"
#include "amct/error.h"
#include "amct/fake_quant.h"
#include "amct/file_io.h"
#include "amct/model_prep.h"
#include "amct/onnx_external_data.h"
#include "amct/onnx_graph.h"
#include "amct/opset_conversion.h"
#include "amct/qdq_parity.h"
#include "amct/quantize.h"
#include "amct/qdq_tensors.h"
#include "amct/save_model.h"
#include "amct/weights_fingerprint.h"

namespace nb = nanobind;

namespace {

using FloatArray = nb::ndarray<nb::numpy, float>;

FloatArray to_numpy(std::vector<float> values, const std::vector<int64_t>& shape) {
  auto* owned = new std::vector<float>(std::move(values));
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<float>*>(p); });
  std::vector<size_t> dims(shape.begin(), shape.end());
  return FloatArray(owned->data(), dims.size(), dims.data(), owner);
}

// float32 values held as raw bytes (a tensor's raw_data), moved, not copied.
FloatArray float_bytes_to_numpy(std::string bytes, const std::vector<int64_t>& shape) {
  auto* owned = new std::string(std::move(bytes));
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::string*>(p); });
  std::vector<size_t> dims(shape.begin(), shape.end());
  return FloatArray(reinterpret_cast<float*>(owned->data()), dims.size(), dims.data(), owner);
}

// AMCT raises RuntimeError for most bad input (record strings, export
// settings, input types), so code written for AMCT catches RuntimeError. Our
// errors keep their precise meaning (ValueError, TypeError, ...) and also
// derive from RuntimeError, so both kinds of except clause catch them.
struct ErrorClasses {
  PyObject* value = nullptr;
  PyObject* type = nullptr;
  PyObject* not_found = nullptr;
  PyObject* io = nullptr;
};
ErrorClasses error_classes;

PyObject* add_error_class(nb::module_& m, const char* name, PyObject* meaning, PyObject* also, const char* doc) {
  PyObject* bases = PyTuple_Pack(2, meaning, also);
  const std::string qualified = std::string("amct_pytorch.") + name;
  PyObject* cls = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, bases, nullptr);
  Py_DECREF(bases);
  if (!cls) throw nb::python_error();
  m.attr(name) = nb::handle(cls);
  return cls;
}

void translate_error(const std::exception_ptr& error, void*) {
  try {
    std::rethrow_exception(error);
  } catch (const amct::Error& e) {
    PyObject* type = PyExc_RuntimeError;
    switch (e.code()) {
      case amct::ErrorCode::kInvalidArgument: type = error_classes.value; break;
      case amct::ErrorCode::kTypeError: type = error_classes.type; break;
      case amct::ErrorCode::kNotFound: type = error_classes.not_found; break;
      case amct::ErrorCode::kIoError: type = error_classes.io; break;
      case amct::ErrorCode::kRuntime: type = PyExc_RuntimeError; break;
    }
    // A message can quote bytes of a user's file that are not UTF-8 (an ONNX
    // node name, a "\377" escape in a record key); decoding it strictly would
    // raise UnicodeDecodeError instead of the error itself.
    const std::string_view message = e.what();
    PyObject* text = PyUnicode_DecodeUTF8(message.data(), static_cast<Py_ssize_t>(message.size()), "backslashreplace");
    if (!text) return;
    PyErr_SetObject(type, text);
    Py_DECREF(text);
  }
}

// The exporter's model: its serialized bytes (parsed where they lie, not
// copied), or the path of a file whose weights are in external data files.
onnx::ModelProto exported_model(const nb::object& exported) {
  if (nb::isinstance<nb::bytes>(exported)) {
    const auto bytes = nb::borrow<nb::bytes>(exported);
    return amct::parse_onnx_model(std::string_view(bytes.c_str(), bytes.size()), "exported model");
  }
  return amct::load_onnx_model(nb::cast<std::string>(exported));
}

using InputArray = nb::ndarray<const float, nb::c_contig, nb::device::cpu>;

// `collect(names)` returns {name: float32 C-contiguous array}; the core
// copies each array.
std::map<std::string, amct::LayerInputs> call_input_collector(const nb::callable& collect,
                                                              const std::vector<std::string>& names) {
  std::map<std::string, amct::LayerInputs> out;
  const nb::dict arrays = nb::cast<nb::dict>(collect(names));
  for (const auto& [key, value] : arrays) {
    const auto array = nb::cast<InputArray>(value);
    amct::LayerInputs& inputs = out[nb::cast<std::string>(key)];
    inputs.values.assign(array.data(), array.data() + array.size());
    for (size_t d = 0; d < array.ndim(); ++d) inputs.shape.push_back(static_cast<int64_t>(array.shape(d)));
  }
  return out;
}

nb::dict quantize_model(const std::string& config_file, const std::string& modified_onnx_file,
                        const std::string& record_file, const nb::object& exported, const std::string& modules_json,
                        int64_t opset_version, bool fake_quantize_deconv_weights, size_t external_data_limit,
                        nb::object collect_layer_inputs, bool full_qdq_tensors) {
  amct::QuantizeOptions options;
  options.full_qdq_tensors = full_qdq_tensors;
  options.opset_version = opset_version;
  options.fake_quantize_deconv_weights = fake_quantize_deconv_weights;
  options.external_data_limit = external_data_limit;
  if (!collect_layer_inputs.is_none()) {
    const nb::callable collect = nb::cast<nb::callable>(collect_layer_inputs);
    options.collect_layer_inputs = [collect](const std::vector<std::string>& names) {
      return call_input_collector(collect, names);
    };
  }
  amct::QuantizeResult result =
      amct::quantize_model(config_file, modified_onnx_file, record_file, exported_model(exported),
                           amct::parse_module_list(modules_json), options);
  nb::list layers;
  std::vector<amct::CalibrationTarget> targets;
  std::vector<std::string> recurrent_layers;
  for (auto& layer : result.layers) {
    nb::dict item;
    item["name"] = layer.name;
    item["module_type"] = layer.module_type;
    // Where calibration reads the layer's input: its module's call, or the op
    // that reads its weight (a subclass's or a functional use's).
    item["observe_at"] = layer.use == amct::LayerUse::kCall ? "module_call" : "weight_op";
    // false for a layer whose module forward() never calls (F.linear(x, m.weight), out_proj).
    item["module_called"] = layer.use != amct::LayerUse::kWeightRead;
    item["weight"] =
        layer.weight.empty() ? nb::none() : nb::cast(float_bytes_to_numpy(std::move(layer.weight), layer.weight_shape));
    const int64_t bias_len = static_cast<int64_t>(layer.bias.size());
    item["bias"] = layer.bias.empty() ? nb::none() : nb::cast(to_numpy(std::move(layer.bias), {bias_len}));
    item["fake_quant_weight"] = layer.fake_quant_weight.empty()
                                    ? nb::none()
                                    : nb::cast(to_numpy(std::move(layer.fake_quant_weight), layer.weight_shape));
    const int64_t channels = static_cast<int64_t>(layer.balance_factor.size());
    item["balance_factor"] =
        layer.balance_factor.empty() ? nb::none() : nb::cast(to_numpy(std::move(layer.balance_factor), {channels}));
    // LSTM/GRU: weight_hh_l0, and the calibrator index of the hidden state
    // (after every layer's input, so a layer's input index is its position).
    const bool recurrent = !layer.recurrent_weight.empty();
    item["recurrent_weight"] = recurrent ? nb::cast(to_numpy(std::move(layer.recurrent_weight),
                                                             layer.recurrent_weight_shape))
                                         : nb::none();
    if (recurrent) recurrent_layers.push_back(layer.name);
    item["recurrent_index"] =
        recurrent ? nb::cast(result.layers.size() + recurrent_layers.size() - 1) : nb::none();
    layers.append(item);
    targets.push_back({layer.name, amct::TensorRole::kInput});
  }
  for (const auto& name : recurrent_layers) targets.push_back({name, amct::TensorRole::kRecurrent});
  nb::list fused;
  for (const auto& pair : result.fused) fused.append(nb::make_tuple(pair.conv, pair.batchnorm));
  // name -> (weight, bias) of the fused convs that stay float.
  nb::dict fused_float;
  for (auto& conv : result.fused_float_convs) {
    const int64_t weight_len = static_cast<int64_t>(conv.weight.size());
    const int64_t bias_len = static_cast<int64_t>(conv.bias.size());
    fused_float[nb::str(conv.name.c_str())] = nb::make_tuple(to_numpy(std::move(conv.weight), {weight_len}),
                                                             to_numpy(std::move(conv.bias), {bias_len}));
  }
  nb::dict out;
  out["layers"] = layers;
  out["fused_batchnorms"] = fused;
  out["fused_float_convs"] = fused_float;
  out["notes"] = result.notes;
  // After the layers' inputs and hidden states, the full-INT8 QDQ model's
  // tensors, calibrated with the first layer's activation config (they
  // belong to no layer).
  const bool any_layer = !result.layers.empty();
  if (any_layer)
    for (const auto& tensor : result.qdq_tensors)
      targets.push_back({tensor, amct::TensorRole::kTensor, result.layers.front().name});
  out["qdq_tensors"] = any_layer ? result.qdq_tensors : std::vector<std::string>{};
  out["calibrator"] = nb::cast(new amct::Calibrator(record_file, std::move(result.record), result.config,
                                                    std::move(targets), result.weights_fingerprint),
                               nb::rv_policy::take_ownership);
  return out;
}

const char* outcome_name(amct::RollbackSearch::Outcome outcome) {
  switch (outcome) {
    case amct::RollbackSearch::Outcome::kSearching: return "searching";
    case amct::RollbackSearch::Outcome::kAllQuantized: return "all_quantized";
    case amct::RollbackSearch::Outcome::kPartialRollback: return "partial_rollback";
    case amct::RollbackSearch::Outcome::kAllRolledBack: return "all_rolled_back";
  }
  return "searching";
}

std::vector<amct::LayerScore> to_scores(const std::vector<std::pair<std::string, double>>& pairs) {
  std::vector<amct::LayerScore> scores;
  for (const auto& [layer, similarity] : pairs) scores.push_back({layer, similarity});
  return scores;
}

std::vector<std::pair<std::string, double>> from_scores(const std::vector<amct::LayerScore>& scores) {
  std::vector<std::pair<std::string, double>> pairs;
  for (const auto& score : scores) pairs.emplace_back(score.layer, score.similarity);
  return pairs;
}

void bind_auto_calibration(nb::module_& m) {
  using ConstFloats = nb::ndarray<const float, nb::c_contig, nb::device::cpu>;
  m.def(
      "fake_quantize_activation",
      [](ConstFloats input, nb::ndarray<float, nb::c_contig, nb::device::cpu> output, float scale, int32_t offset,
         int bits) {
        amct::ActivationQuant quant{scale, offset, amct::QuantFormat::signed_bits(bits)};
        nb::gil_scoped_release release;
        amct::fake_quantize_activation(std::span<const float>(input.data(), input.size()),
                                       std::span<float>(output.data(), output.size()), quant);
      },
      nb::arg("input"), nb::arg("output"), nb::arg("scale"), nb::arg("offset"), nb::arg("bits"),
      "Writes the fake-quantized input into output (contiguous float32 CPU arrays, not copied).");

  m.def(
      "layer_fake_quant",
      [](const std::string& record_file, const std::vector<std::string>& layers,
         const std::vector<std::vector<float>>& biases) {
        if (layers.size() != biases.size()) amct::invalid("layer_fake_quant: one bias (or []) per layer");
        const amct::ScaleOffsetRecord record = amct::read_record_file(record_file);
        nb::list out;
        for (size_t i = 0; i < layers.size(); ++i) {
          amct::LayerFakeQuant quant = amct::layer_fake_quant(record, layers[i], biases[i]);
          nb::dict item;
          item["scale"] = quant.input.scale;
          item["offset"] = quant.input.offset;
          item["bits"] = quant.input.format.bits();
          const int64_t bias_len = static_cast<int64_t>(quant.bias.size());
          item["bias"] = quant.bias.empty() ? nb::none() : nb::cast(to_numpy(std::move(quant.bias), {bias_len}));
          out.append(item);
        }
        return out;
      },
      nb::arg("record_file"), nb::arg("layers"), nb::arg("biases"),
      "Per layer of a calibrated record: input scale, offset and bits, and the bias on the INT32 grid.");

  nb::class_<amct::LayerSensitivity>(m, "LayerSensitivity")
      .def(nb::init<std::vector<std::string>>(), nb::arg("layers"))
      .def_prop_ro("layer_count", &amct::LayerSensitivity::layer_count)
      .def("batches", &amct::LayerSensitivity::batches)
      .def(
          "add_batch",
          [](amct::LayerSensitivity& self, size_t index, ConstFloats reference, ConstFloats quantized) {
            std::span<const float> r(reference.data(), reference.size());
            std::span<const float> q(quantized.data(), quantized.size());
            nb::gil_scoped_release release;
            self.add_batch(index, r, q);
          },
          nb::arg("index"), nb::arg("reference"), nb::arg("quantized"),
          "Adds one batch of a layer's float and fake-quant outputs (contiguous float32 CPU arrays, not copied).")
      .def("scores", [](const amct::LayerSensitivity& self) { return from_scores(self.scores()); });

  nb::class_<amct::RollbackSearch>(m, "RollbackSearch")
      .def(
          "__init__",
          [](amct::RollbackSearch* self, const std::vector<std::pair<std::string, double>>& scores,
             std::pair<bool, double> global, std::pair<bool, double> original) {
            new (self) amct::RollbackSearch(to_scores(scores), {global.first, global.second},
                                            {original.first, original.second});
          },
          nb::arg("scores"), nb::arg("global_metric"), nb::arg("original_metric"))
      .def_prop_ro("searching", &amct::RollbackSearch::searching)
      .def_prop_ro("outcome", [](const amct::RollbackSearch& self) { return outcome_name(self.outcome()); })
      .def_prop_ro("proposal", &amct::RollbackSearch::proposal)
      .def_prop_ro("rolled_back", &amct::RollbackSearch::rolled_back)
      .def_prop_ro("trials", &amct::RollbackSearch::trials)
      .def_prop_ro("max_trials", &amct::RollbackSearch::max_trials)
      .def_prop_ro("ranking", [](const amct::RollbackSearch& self) { return from_scores(self.ranking()); })
      .def_prop_ro("final_config", &amct::RollbackSearch::final_config)
      .def(
          "report",
          [](amct::RollbackSearch& self, bool satisfied, double loss) { self.report({satisfied, loss}); },
          nb::arg("satisfied"), nb::arg("loss"))
      .def("write_trial_config",
           [](const amct::RollbackSearch& self, const std::string& path, const std::string& config_file) {
             amct::write_trial_config(path, config_file, self.proposal());
           },
           nb::arg("path"), nb::arg("config_file"))
      .def("write_results", &amct::write_auto_calibration_results, nb::arg("config_file"), nb::arg("directory"),
           nb::arg("history_file"), nb::arg("copies"));

  nb::class_<amct::BinInput>(m, "BinInput")
      .def_ro("name", &amct::BinInput::name)
      .def_ro("dims", &amct::BinInput::dims)
      .def_ro("dtype", &amct::BinInput::dtype)
      .def_ro("directory", &amct::BinInput::directory);
  m.def("parse_bin_inputs", &amct::parse_bin_inputs, nb::arg("input_shape"), nb::arg("data_dir"),
        nb::arg("data_types"));
  m.def("bin_batch_files", &amct::bin_batch_files, nb::arg("inputs"), nb::arg("count"));
  m.def(
      "read_bin_batch",
      [](const std::string& path, const amct::BinInput& input) {
        const std::string data = amct::read_bin_batch(path, input);
        return nb::bytes(data.data(), data.size());
      },
      nb::arg("path"), nb::arg("input"));

  m.def(
      "check_output_file_name",
      [](const std::string& path, const std::string& what) { amct::check_output_file_name(path, what); },
      nb::arg("path"), nb::arg("what"));
  m.def("output_model_path", &amct::output_model_path, nb::arg("save_path"), nb::arg("kind"));
  m.def("record_sidecar_path", &amct::record_sidecar_path, nb::arg("record_file"));
}

nb::dict quantize_preprocess(const std::string& config_file, const std::string& record_file,
                             const nb::object& exported, const std::string& modules_json) {
  std::vector<std::string> notes;
  std::unique_ptr<amct::BalanceRecorder> recorder = amct::quantize_preprocess(
      config_file, record_file, exported_model(exported), amct::parse_module_list(modules_json), notes);
  nb::list layers;
  for (size_t i = 0; i < recorder->layer_count(); ++i) {
    const amct::BalanceLayer& layer = recorder->layer(i);
    nb::dict item;
    item["name"] = layer.name;
    item["module_type"] = layer.module_type;
    item["channels"] = layer.channels();
    layers.append(item);
  }
  nb::dict out;
  out["layers"] = layers;
  out["notes"] = notes;
  out["recorder"] = nb::cast(recorder.release(), nb::rv_policy::take_ownership);
  return out;
}

}  // namespace

NB_MODULE(_amct, m) {
  m.doc() = "C++ core of amct_pytorch";
  error_classes.value = add_error_class(m, "AmctValueError", PyExc_ValueError, PyExc_RuntimeError,
                                       "A bad value (file content, argument); also a RuntimeError, as AMCT raises.");
  error_classes.type = add_error_class(m, "AmctTypeError", PyExc_TypeError, PyExc_RuntimeError,
                                      "An argument of the wrong type; also a RuntimeError, as AMCT raises.");
  error_classes.not_found = add_error_class(m, "AmctFileNotFoundError", PyExc_FileNotFoundError, PyExc_ValueError,
                                           "A missing input file; also a ValueError, as AMCT raises.");
  error_classes.io = add_error_class(m, "AmctOSError", PyExc_OSError, PyExc_RuntimeError,
                                    "A file that cannot be read or written; also a RuntimeError.");
  nb::register_exception_translator(translate_error);

  m.def(
      "check_no_quantization_modules",
      [](const std::string& modules_json) {
        amct::check_no_quantization_modules(amct::parse_module_list(modules_json));
      },
      nb::arg("modules_json"));

  m.def(
      "create_quant_config",
      [](const std::string& config_file, const nb::object& exported, const std::string& modules_json,
         const std::vector<std::string>& skip_layers, int64_t batch_num, bool activation_offset,
         const std::string& simple_config_file, bool quantize_subclasses, bool linear_channel_wise) {
        amct::create_quant_config(config_file, exported_model(exported), amct::parse_module_list(modules_json),
                                  skip_layers, batch_num, activation_offset, simple_config_file, quantize_subclasses,
                                  linear_channel_wise);
      },
      nb::arg("config_file"), nb::arg("exported"), nb::arg("modules_json"), nb::arg("skip_layers"),
      nb::arg("batch_num"), nb::arg("activation_offset"), nb::arg("simple_config_file"),
      nb::arg("quantize_subclasses") = true, nb::arg("linear_channel_wise") = false);

  m.def("quantize_model", &quantize_model, nb::arg("config_file"), nb::arg("modified_onnx_file"),
        nb::arg("record_file"), nb::arg("exported"), nb::arg("modules_json"),
        nb::arg("opset_version") = amct::QuantizeOptions::kDefaultOpset,
        nb::arg("fake_quantize_deconv_weights") = false,
        nb::arg("external_data_limit") = amct::kExternalDataLimit, nb::arg("collect_layer_inputs") = nb::none(),
        nb::arg("full_qdq_tensors") = false);

  m.def(
      "qdq_observation_model",
      [](const std::string& model_file, const std::vector<std::string>& tensors) {
        std::string bytes;
        {
          nb::gil_scoped_release release;
          bytes = amct::qdq_observation_model(model_file, tensors);
        }
        return nb::bytes(bytes.data(), bytes.size());
      },
      nb::arg("model_file"), nb::arg("tensors"),
      "The modified ONNX with `tensors` as extra graph outputs, for ONNX Runtime to calibrate them.");

  m.def("quantize_preprocess", &quantize_preprocess, nb::arg("config_file"), nb::arg("record_file"),
        nb::arg("exported"), nb::arg("modules_json"));

  m.def(
      "save_model",
      [](const std::string& modified_onnx_file, const std::string& record_file, const std::string& save_path,
         bool deploy, bool fake_quant, bool qdq, bool qdq_optional, int64_t qdq_opset, size_t external_data_limit,
         const std::string& qdq_mode) {
        amct::SaveOptions options;
        if (qdq_mode == "full")
          options.qdq_mode = amct::SaveOptions::QdqMode::kFull;
        else if (qdq_mode == "layers")
          options.qdq_mode = amct::SaveOptions::QdqMode::kLayers;
        else if (qdq_mode != "auto")
          amct::invalid("qdq_mode is '" + qdq_mode + "'; expected 'full', 'layers' or None");
        options.deploy = deploy;
        options.fake_quant = fake_quant;
        options.qdq = qdq;
        options.qdq_optional = qdq_optional;
        options.qdq_opset = qdq_opset;
        options.external_data_limit = external_data_limit;
        amct::SaveResult result = amct::save_model(modified_onnx_file, record_file, save_path, options);
        return nb::make_tuple(result.written, result.warnings);
      },
      nb::arg("modified_onnx_file"), nb::arg("record_file"), nb::arg("save_path"), nb::arg("deploy") = true,
      nb::arg("fake_quant") = true, nb::arg("qdq") = true, nb::arg("qdq_optional") = false,
      nb::arg("qdq_opset") = 0, nb::arg("external_data_limit") = amct::kExternalDataLimit,
      nb::arg("qdq_mode") = "auto");

  m.def(
      "parity_metrics",
      [](nb::ndarray<const float, nb::c_contig, nb::device::cpu> reference,
         nb::ndarray<const float, nb::c_contig, nb::device::cpu> other, const std::string& what) {
        amct::ParityMetrics metrics;
        {
          nb::gil_scoped_release release;
          metrics = amct::parity_metrics(std::span<const float>(reference.data(), reference.size()),
                                         std::span<const float>(other.data(), other.size()), what);
        }
        nb::dict out;
        out["cosine"] = metrics.cosine;
        out["sqnr_db"] = metrics.sqnr_db;
        out["max_abs_error"] = metrics.max_abs_error;
        out["step"] = metrics.step;
        out["within_step"] = metrics.within_step;
        out["count"] = metrics.count;
        return out;
      },
      nb::arg("reference"), nb::arg("other"), nb::arg("what"),
      "Cosine, SQNR (dB), max abs error and the share within one 8-bit step of two float32 arrays (not copied).");

  m.def(
      "fake_quant_layers",
      [](const std::string& fake_quant_file) { return amct::fake_quant_layers(amct::load_onnx_model(fake_quant_file)); },
      nb::arg("fake_quant_file"), "Names of the layers a fake-quant model quantizes.");

  m.def(
      "expose_layer_outputs",
      [](const std::string& model_file, const std::vector<std::string>& layers,
         const std::vector<std::string>& extra_tensors) {
        onnx::ModelProto model = amct::load_onnx_model(model_file);
        const auto tensors = amct::layer_result_tensors(model, layers);
        amct::expose_tensors(model, tensors);
        std::vector<amct::LayerTensor> extra;
        for (const auto& tensor : extra_tensors) extra.push_back({"", tensor});
        amct::expose_tensors(model, extra);
        std::vector<std::pair<std::string, std::string>> pairs;
        for (const auto& t : tensors) pairs.emplace_back(t.layer, t.tensor);
        const std::string bytes = model.SerializeAsString();
        return nb::make_tuple(nb::bytes(bytes.data(), bytes.size()), pairs);
      },
      nb::arg("model_file"), nb::arg("layers"), nb::arg("extra_tensors") = std::vector<std::string>{},
      "The model with each listed layer's float result and each of extra_tensors added as graph outputs "
      "(serialized), and (layer, tensor) pairs for the layers found.");

  m.def(
      "feed_reference_inputs",
      [](const std::string& qdq_file, const std::string& reference_file, const std::vector<std::string>& layers) {
        onnx::ModelProto model = amct::load_onnx_model(qdq_file);
        const auto fed = amct::feed_reference_inputs(model, amct::load_onnx_model(reference_file), layers);
        const auto tensors = amct::layer_result_tensors(model, layers);
        amct::expose_tensors(model, tensors);
        std::vector<std::pair<std::string, std::string>> pairs, inputs;
        for (const auto& t : tensors) pairs.emplace_back(t.layer, t.tensor);
        for (const auto& f : fed) inputs.emplace_back(f.input, f.tensor);
        const std::string bytes = model.SerializeAsString();
        return nb::make_tuple(nb::bytes(bytes.data(), bytes.size()), pairs, inputs);
      },
      nb::arg("qdq_file"), nb::arg("reference_file"), nb::arg("layers"),
      "The QDQ model with each listed layer's input quantization reading a new graph input in place of a "
      "tensor the reference model computes, and each layer's float result as a graph output (serialized); "
      "(layer, tensor) pairs for the layers found and (new input, reference tensor) pairs.");

  m.def(
      "convert_opset",
      [](const nb::bytes& onnx_bytes, int64_t target) {
        onnx::ModelProto model =
            amct::parse_onnx_model(std::string_view(onnx_bytes.c_str(), onnx_bytes.size()), "model bytes");
        {
          nb::gil_scoped_release release;
          amct::convert_opset(model, target);
        }
        const std::string bytes = model.SerializeAsString();
        return nb::bytes(bytes.data(), bytes.size());
      },
      nb::arg("onnx_bytes"), nb::arg("target"),
      "The serialized model converted to default-domain opset `target` (11..21).");

  bind_auto_calibration(m);

  nb::class_<amct::Calibrator>(m, "Calibrator")
      .def_prop_ro("layer_count", &amct::Calibrator::layer_count)
      .def_prop_ro("batch_num", &amct::Calibrator::batch_num)
      .def_prop_ro("finished", &amct::Calibrator::finished)
      .def_prop_ro("state_bytes", &amct::Calibrator::state_bytes)
      .def("layer_name", &amct::Calibrator::layer_name)
      .def("batches_seen", &amct::Calibrator::batches_seen)
      .def(
          "observe",
          [](amct::Calibrator& self, size_t index,
             nb::ndarray<const float, nb::c_contig, nb::device::cpu> activation) {
            std::span<const float> data(activation.data(), activation.size());
            nb::gil_scoped_release release;
            return self.observe(index, data);
          },
          nb::arg("index"), nb::arg("activation"),
          "Feeds one batch of a layer's input (a contiguous float32 CPU tensor, not copied).")
      .def("write_record", &amct::Calibrator::write_record,
           "Writes the record file now (after every layer saw batch_num batches), e.g. after a failed write.");

  nb::class_<amct::BalanceRecorder>(m, "BalanceRecorder")
      .def_prop_ro("layer_count", &amct::BalanceRecorder::layer_count)
      .def_prop_ro("finished", &amct::BalanceRecorder::finished)
      .def("layer_name", [](const amct::BalanceRecorder& self, size_t index) { return self.layer(index).name; })
      .def("observed", &amct::BalanceRecorder::observed)
      .def(
          "observe",
          [](amct::BalanceRecorder& self, size_t index,
             nb::ndarray<const float, nb::c_contig, nb::device::cpu> activation) {
            std::vector<int64_t> shape(activation.ndim());
            for (size_t i = 0; i < shape.size(); ++i) shape[i] = static_cast<int64_t>(activation.shape(i));
            std::span<const float> data(activation.data(), activation.size());
            nb::gil_scoped_release release;
            return self.observe(index, data, shape);
          },
          nb::arg("index"), nb::arg("activation"),
          "Feeds one forward's input of a DMQ layer (a contiguous float32 CPU tensor, not copied).")
      .def(
          "factors",
          [](const amct::BalanceRecorder& self, size_t index) {
            std::vector<float> values = self.factors(index);
            const int64_t n = static_cast<int64_t>(values.size());
            return to_numpy(std::move(values), {n});
          },
          nb::arg("index"), "The balance factors written to the record (empty before).");
}
