"""amct_pytorch: AMCT-compatible post-training quantization with a C++ engine.

The public API mirrors AMCT's::

    import amct_pytorch as amct
    amct.create_quant_config(config_file, model, input_data)
    balancer = amct.quantize_preprocess(config_file, record_file, model, input_data)  # DMQ configs only
    balancer(batch)
    calib = amct.quantize_model(config_file, modified_onnx, record_file, model, input_data)
    for batch in batches:
        calib(batch)
    amct.save_model(modified_onnx, record_file, save_path)

or, with the layers most sensitive to quantization rolled back until the
user's evaluator accepts the result::

    amct.accuracy_based_auto_calibration(model, evaluator, config_file, record_file, save_path, input_data)
"""

from amct_pytorch.api import create_quant_config, quantize_model, quantize_preprocess, save_model
from amct_pytorch.auto_calibration import accuracy_based_auto_calibration
from amct_pytorch.compare import compare
from amct_pytorch.evaluator import ModelEvaluator
from amct_pytorch.errors import AmctFileNotFoundError, AmctOSError, AmctTypeError, AmctValueError
from amct_pytorch.progress import set_progress

__all__ = ["create_quant_config", "quantize_preprocess", "quantize_model", "save_model",
           "accuracy_based_auto_calibration", "ModelEvaluator", "compare", "AmctValueError", "AmctTypeError",
           "AmctFileNotFoundError", "AmctOSError", "set_progress"]
__version__ = "0.1.0"
