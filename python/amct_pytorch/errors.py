"""The exceptions amct_pytorch raises for bad input.

Each keeps its precise meaning and also derives from the class AMCT raises in
the same situation, so code written for AMCT keeps working:

- AmctValueError(ValueError, RuntimeError): bad values in files or arguments;
- AmctTypeError(TypeError, RuntimeError): arguments of the wrong type;
- AmctFileNotFoundError(FileNotFoundError, ValueError): a missing input file;
- AmctOSError(OSError, RuntimeError): a file that cannot be read or written.

Flow errors (save_model before calibration has finished, a calibration model
passed back in) are plain RuntimeError.
"""

from amct_pytorch._amct import AmctFileNotFoundError, AmctOSError, AmctTypeError, AmctValueError

__all__ = ["AmctValueError", "AmctTypeError", "AmctFileNotFoundError", "AmctOSError"]
