// ONNX external data (https://onnx.ai/onnx/repo-docs/ExternalData.html): a
// tensor whose data_location is EXTERNAL keeps its bytes in another file,
// named by the external_data entries "location" (relative to the model
// file's directory), "offset" and "length" (bytes). Protobuf cannot
// serialize a message of 2 GiB, so models with more weights than that exist
// only in this form.
//
// Reading resolves every external tensor into raw_data, so the passes see
// ordinary tensors. Writing moves the largest initializers out again when a
// model would not fit in one file (AMCT's rule: 2,000,000,000 bytes), and
// stages the data files in the same FileSet as the .onnx file, so they are
// replaced together.
#pragma once

#include <cstddef>
#include <set>
#include <string>
#include <vector>

#include "amct/file_io.h"
#include "onnx/onnx.pb.h"

namespace amct {

// Reads the external data of every tensor of `model` (initializers and tensor
// attributes, in subgraphs too) into raw_data; `model_path` is the file the
// model was read from. A location that is absolute, leaves the model's
// directory (through "..", or a symbolic link pointing elsewhere) or names no
// regular file, and an offset/length outside the file or disagreeing with the
// tensor's dims and type, throw kInvalidArgument / kNotFound naming the
// tensor, the model file and the data file. Returns the names of the
// initializers that were external.
std::set<std::string> load_external_data(onnx::ModelProto& model, const std::string& model_path);

// AMCT moves initializers out of a model whose serialized form would reach
// this size.
constexpr size_t kExternalDataLimit = 2'000'000'000;

struct ExternalDataRule {
  // While the model's serialized size is `limit` bytes or more, its largest
  // remaining initializer stored in raw_data goes to an external file.
  size_t limit = kExternalDataLimit;
  // "": every moved tensor goes to one file, "<model file>.data" (the torch
  // exporter's and onnx.save's naming), each at a 4096-byte aligned offset.
  // Otherwise each goes to its own file "<tensor name><suffix>" beside the
  // model (AMCT's "_deploy.external" and "_fakequant.external").
  std::string per_tensor_suffix;
  // Initializers moved whatever the size (AMCT moves those that were external
  // in its input again).
  std::set<std::string> always;
};

// Stages `model` for `path` in `files`, with the initializers `rule` moves
// written to their data files, staged in `files` too. Returns the data files'
// paths (empty when the model fits in one file).
std::vector<std::string> stage_onnx_model(FileSet& files, onnx::ModelProto model, const std::string& path,
                                          const ExternalDataRule& rule);
// The same, leaving `model` as it was (its moved tensors get their data
// back): quantize_model hands the weights it wrote on to the calibration
// model without a copy.
std::vector<std::string> stage_onnx_model_keeping_data(FileSet& files, onnx::ModelProto& model,
                                                       const std::string& path, const ExternalDataRule& rule);

// The data file name of `tensor_name` under a per-tensor rule: the tensor's
// name with every character outside [A-Za-z0-9._-] replaced by '_' (tensor
// names may hold '/' or ':'), plus `suffix`.
std::string external_file_name(const std::string& tensor_name, const std::string& suffix);

}  // namespace amct
