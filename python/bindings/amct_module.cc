// The nanobind extension amct_pytorch._amct: exposes the C++ core. No logic
// lives here: arguments are converted, the core is called, errors are mapped
// to Python exceptions in one place.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "amct/calibrator.h"
#include "amct/error.h"
#include "amct/model_prep.h"
#include "amct/onnx_graph.h"
#include "amct/opset_conversion.h"
#include "amct/qdq_parity.h"
#include "amct/quantize.h"
#include "amct/save_model.h"

namespace nb = nanobind;

namespace {

using FloatArray = nb::ndarray<nb::numpy, float>;

FloatArray to_numpy(std::vector<float> values, const std::vector<int64_t>& shape) {
  auto* owned = new std::vector<float>(std::move(values));
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<float>*>(p); });
  std::vector<size_t> dims(shape.begin(), shape.end());
  return FloatArray(owned->data(), dims.size(), dims.data(), owner);
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

std::string bytes_to_string(const nb::bytes& data) { return std::string(data.c_str(), data.size()); }

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
                        const std::string& record_file, const nb::bytes& onnx_bytes, const std::string& modules_json,
                        int64_t opset_version, bool fake_quantize_deconv_weights, nb::object collect_layer_inputs) {
  amct::QuantizeOptions options;
  options.opset_version = opset_version;
  options.fake_quantize_deconv_weights = fake_quantize_deconv_weights;
  if (!collect_layer_inputs.is_none()) {
    const nb::callable collect = nb::cast<nb::callable>(collect_layer_inputs);
    options.collect_layer_inputs = [collect](const std::vector<std::string>& names) {
      return call_input_collector(collect, names);
    };
  }
  amct::QuantizeResult result =
      amct::quantize_model(config_file, modified_onnx_file, record_file, bytes_to_string(onnx_bytes),
                           amct::parse_module_list(modules_json), options);
  nb::list layers;
  std::vector<std::string> names;
  for (auto& layer : result.layers) {
    nb::dict item;
    item["name"] = layer.name;
    item["module_type"] = layer.module_type;
    item["weight"] = layer.weight.empty() ? nb::none() : nb::cast(to_numpy(std::move(layer.weight), layer.weight_shape));
    const int64_t bias_len = static_cast<int64_t>(layer.bias.size());
    item["bias"] = layer.bias.empty() ? nb::none() : nb::cast(to_numpy(std::move(layer.bias), {bias_len}));
    layers.append(item);
    names.push_back(layer.name);
  }
  nb::list fused;
  for (const auto& pair : result.fused) fused.append(nb::make_tuple(pair.conv, pair.batchnorm));
  nb::dict out;
  out["layers"] = layers;
  out["fused_batchnorms"] = fused;
  out["notes"] = result.notes;
  out["calibrator"] = nb::cast(new amct::Calibrator(record_file, std::move(result.record), result.config, names,
                                                    result.weights_fingerprint),
                               nb::rv_policy::take_ownership);
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
      [](const std::string& config_file, const nb::bytes& onnx_bytes, const std::string& modules_json,
         const std::vector<std::string>& skip_layers, int64_t batch_num, bool activation_offset,
         const std::string& simple_config_file) {
        amct::create_quant_config(config_file, bytes_to_string(onnx_bytes), amct::parse_module_list(modules_json),
                                  skip_layers, batch_num, activation_offset, simple_config_file);
      },
      nb::arg("config_file"), nb::arg("onnx_bytes"), nb::arg("modules_json"), nb::arg("skip_layers"),
      nb::arg("batch_num"), nb::arg("activation_offset"), nb::arg("simple_config_file"));

  m.def("quantize_model", &quantize_model, nb::arg("config_file"), nb::arg("modified_onnx_file"),
        nb::arg("record_file"), nb::arg("onnx_bytes"), nb::arg("modules_json"),
        nb::arg("opset_version") = amct::QuantizeOptions::kDefaultOpset,
        nb::arg("fake_quantize_deconv_weights") = false, nb::arg("collect_layer_inputs") = nb::none());

  m.def(
      "save_model",
      [](const std::string& modified_onnx_file, const std::string& record_file, const std::string& save_path,
         bool deploy, bool fake_quant, bool qdq, bool qdq_optional, int64_t qdq_opset) {
        amct::SaveOptions options;
        options.deploy = deploy;
        options.fake_quant = fake_quant;
        options.qdq = qdq;
        options.qdq_optional = qdq_optional;
        options.qdq_opset = qdq_opset;
        amct::SaveResult result = amct::save_model(modified_onnx_file, record_file, save_path, options);
        return nb::make_tuple(result.written, result.warnings);
      },
      nb::arg("modified_onnx_file"), nb::arg("record_file"), nb::arg("save_path"), nb::arg("deploy") = true,
      nb::arg("fake_quant") = true, nb::arg("qdq") = true, nb::arg("qdq_optional") = false,
      nb::arg("qdq_opset") = 0);

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
      [](const std::string& model_file, const std::vector<std::string>& layers) {
        onnx::ModelProto model = amct::load_onnx_model(model_file);
        const auto tensors = amct::layer_result_tensors(model, layers);
        amct::expose_tensors(model, tensors);
        std::vector<std::pair<std::string, std::string>> pairs;
        for (const auto& t : tensors) pairs.emplace_back(t.layer, t.tensor);
        const std::string bytes = model.SerializeAsString();
        return nb::make_tuple(nb::bytes(bytes.data(), bytes.size()), pairs);
      },
      nb::arg("model_file"), nb::arg("layers"),
      "The model with each listed layer's float result added as a graph output (serialized), and "
      "(layer, tensor) pairs for the layers found.");

  m.def(
      "convert_opset",
      [](const nb::bytes& onnx_bytes, int64_t target) {
        onnx::ModelProto model = amct::parse_onnx_model(bytes_to_string(onnx_bytes), "model bytes");
        {
          nb::gil_scoped_release release;
          amct::convert_opset(model, target);
        }
        const std::string bytes = model.SerializeAsString();
        return nb::bytes(bytes.data(), bytes.size());
      },
      nb::arg("onnx_bytes"), nb::arg("target"),
      "The serialized model converted to default-domain opset `target` (11..21).");

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
}
