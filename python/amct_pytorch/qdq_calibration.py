"""Calibration of the tensors that the full-INT8 QDQ model quantizes beyond
the layers' inputs (docs/design-notes.md#full-int8-qdq-model).

Those tensors (outputs of residual Adds, Sigmoid and Mul of squeeze-excite
blocks, Concat, pooling...) are named by the modified ONNX, not by torch
modules. ONNX Runtime runs the modified ONNX (float) on each calibration
batch, returning exactly those tensors, which go to the C++ calibrator like
the layers' inputs. This costs one Runtime forward per calibration batch."""

import importlib.util
import logging

import torch
from torch.utils import _pytree

from amct_pytorch import _amct
from amct_pytorch.errors import AmctValueError
from amct_pytorch.module_tools import as_float32_cpu

logger = logging.getLogger("amct_pytorch")


def runtime_available():
    """ONNX Runtime is not a dependency of amct; full_int8_qdq needs it."""
    return importlib.util.find_spec("onnxruntime") is not None


class QdqTensorObserver:
    """A forward pre-hook (with kwargs) of the calibration model's root."""

    def __init__(self, calibrator, modified_onnx_file, tensors, first_index):
        self._calibrator = calibrator
        self._model_file = modified_onnx_file
        self._tensors = list(tensors)
        self._first_index = first_index
        self._session = None

    def _runtime_session(self):
        if self._session is None:
            import onnxruntime  # pylint: disable=import-outside-toplevel

            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            model = _amct.qdq_observation_model(self._model_file, self._tensors)
            self._session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        return self._session

    def __call__(self, _module, args, kwargs):
        if self._calibrator.finished:
            return
        session = self._runtime_session()
        leaves = [leaf for leaf in _pytree.tree_leaves((args, kwargs)) if isinstance(leaf, torch.Tensor)]
        inputs = session.get_inputs()
        if len(leaves) != len(inputs):
            raise AmctValueError(f"calibration: the model got {len(leaves)} input tensors; modified ONNX file "
                                 f"'{self._model_file}' has {len(inputs)} inputs (call the calibration model the "
                                 "way quantize_model's input_data did)")
        feed = {spec.name: leaf.detach().cpu().numpy() for spec, leaf in zip(inputs, leaves)}
        for offset, value in enumerate(session.run(self._tensors, feed)):
            if self._calibrator.observe(self._first_index + offset, as_float32_cpu(torch.from_numpy(value))):
                logger.info("calibration finished after %d batches; record file written", self._calibrator.batch_num)


def observe_qdq_tensors(model, result, modified_onnx_file):
    """Registers the observer on `model` when the core listed tensors."""
    tensors = result.get("qdq_tensors") or []
    if tensors:
        first = result["calibrator"].layer_count - len(tensors)
        model.register_forward_pre_hook(QdqTensorObserver(result["calibrator"], modified_onnx_file, tensors, first),
                                        with_kwargs=True)
    return model
