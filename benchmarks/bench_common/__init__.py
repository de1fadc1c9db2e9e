"""Shared code of the PTQ benchmarks (benchmarks/bench_ptq.py).

- workloads.py: the three real workloads (Fashion-MNIST CNN, all-MiniLM-L6-v2
  on Debian fortunes, EfficientNet-Lite0 on packaged photos): models, data,
  metrics;
- tools.py: the quantizers compared (amct IFMR/HFMG, onnxruntime
  quantize_static MinMax/Entropy/Percentile, PyTorch PT2E);
- worker.py: one calibration run in its own process (time, peak RSS,
  evaluation outputs);
- report.py: RESULTS.md and the PNG plots.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
