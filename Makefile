# archc: two commands do all the setup on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.archc-setup
# torch is pinned to the release that lies on this machine's disk; pyproject accepts torch>=2.5.
TORCH   ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

.PHONY: setup demo test test-all bench figures docs vendor-viz clean gpu-pack gpu-dry-run gpu-image-dry-run

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@command -v dot >/dev/null 2>&1 || { \
	  echo "setup: installing the graphviz binary with apt"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null) \
	  || echo "setup: could not install graphviz; .dot output still works, other formats need 'apt-get install graphviz'"; }
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
	  echo "setup: installing chromium and chromium-driver with apt (for the viewer's browser test)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	  || echo "setup: could not install chromium; tests/test_viewer.py will skip"; }
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@# torch's CUDA build takes about 5.6 GB in the venv; a full disk otherwise shows only as
	@# pip's "No space left on device" at the end of a long install.
	@$(BIN)/python -c "import torch, torchvision" 2>/dev/null || { \
	  free=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); \
	  [ "$$free" -ge 7 ] || echo "setup: warning: $$free GiB free here; torch and torchvision need about 6 GiB in $(VENV)"; \
	  $(BIN)/pip install -q $(TORCH); }
	@# The distribution was called archc before it became archcompiler (archc on PyPI is someone
	@# else's); a .venv made before the rename would otherwise keep both.
	@$(BIN)/pip uninstall -y -q archc >/dev/null 2>&1 || true
	$(BIN)/pip install -q -e '.[dev,onnx]'
	@touch $(STAMP)

# A short run that fits a 2-core CPU: 3 epochs of 640 synthetic images (3 points per curve).
demo: setup
	$(BIN)/archc check specs/no_attention.yaml
	rm -rf runs/demo
	$(BIN)/archc train specs/no_attention.yaml --data synthetic:train=640,val=200 --epochs 3 --device cpu --out runs/demo

# The suite CI runs: everything but the tests marked slow (minutes of CPU training each), on
# one pytest-xdist worker per core (at most 4), which takes the 2-core CI machine near 3 minutes.
# Each test stays independent of the others' order and process; PYTEST_XDIST="" runs them in one.
PYTEST_XDIST ?= -n auto --maxprocesses=4
test: setup
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_XDIST) $(PYTEST_ARGS)

# Everything, including the real-data training test (about 13 minutes on a quiet 2-core CPU).
test-all: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The timed suite (every paper spec x train/infer x eager/compiled), then docs/benchmarks.md from bench/results/.
bench: setup
	$(BIN)/python -m pytest bench -q --benchmark-enable --benchmark-json=bench/results/pytest-benchmark.json
	$(BIN)/python -m runtime.bench.docs

figures: setup
	$(BIN)/python -m archcompiler.tools.figures docs/figures

# The generated references: the block docs and the JSON Schema (a test fails when stale).
docs: setup
	$(BIN)/python -m archcompiler.tools.blockdocs docs/blocks.md
	$(BIN)/archc schema -o archcompiler/schema/spec.schema.json

# The vendored Graphviz-in-WebAssembly that `archc render -o x.html` inlines, refetched from npm
# (archcompiler/backends/html_assets/README.md). The file is committed: a fresh clone needs no npm.
# A new version: change both lines, and the README there (the check below fails until then).
VIZ_VERSION := 3.31.0
VIZ_SHA256  := c9e0b310f9883910e01c66054b48b7ff4be3d8695141116635e72b0af152692e
vendor-viz:
	rm -rf build/viz && mkdir -p build/viz
	cd build/viz && npm pack -q @viz-js/viz@$(VIZ_VERSION) && tar xzf viz-js-viz-$(VIZ_VERSION).tgz
	echo "$(VIZ_SHA256)  build/viz/package/dist/viz-global.js" | sha256sum -c
	cp build/viz/package/dist/viz-global.js archcompiler/backends/html_assets/viz-global.js

# The GPU programme (bench/gpu/README.md). gpu-pack: wheels the GPU machine lacks and Tiny
# ImageNet in parts of at most 55 MiB, into gpu-pack/ (ignored). TINY_IMAGENET=DIR is the tree
# to pack (default: $$ARCHC_TINY_IMAGENET, else the shared sample, a rehearsal set); a copy with
# extra classes takes DROP_CLASSES="n02480855 n10148035". Needs PyPI for the wheels, nothing else.
TINY_IMAGENET ?=
DROP_CLASSES  ?=
gpu-pack:
	$(PY) bench/gpu/pack.py $(if $(TINY_IMAGENET),--data $(TINY_IMAGENET)) $(foreach c,$(DROP_CLASSES),--drop-class $(c))

# Every phase of the GPU programme on the CPU with tiny sizes, in a temporary folder.
gpu-dry-run: setup
	$(BIN)/python bench/gpu/dryrun.py

# The same rehearsal on the GPU machine's own software, not this machine's: Python 3.12, torch
# 2.11.0+cu130 and what else its image holds (bench/gpu/image-requirements.txt; about 4 GB, a
# CUDA build as there, run on the CPU here) in .venv-gpu-image, with jsonschema and graphviz
# installed from gpu-pack/wheels by run.sh exactly as on the machine; then the test suite on
# that stack. Optional (not part of make test): it downloads the CUDA build. PYTHON312=path.
# The first Python 3.12 that runs (a pyenv shim may exist and refuse); evaluated only here.
PYTHON312 ?= $(firstword $(foreach p,$(shell command -v python3.12) $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12),$(if $(shell $(p) -c 'print(1)' 2>/dev/null),$(p))))
IMAGE_VENV := .venv-gpu-image
IMAGE_WORK := build/gpu-image-dry-run
gpu-image-dry-run:
	@test -n "$(PYTHON312)" || { echo "gpu-image-dry-run: no Python 3.12 found; pass PYTHON312=/path/to/python3.12"; exit 1; }
	test -x $(IMAGE_VENV)/bin/python || $(PYTHON312) -m venv $(IMAGE_VENV)
	$(IMAGE_VENV)/bin/pip install -q -r bench/gpu/image-requirements.txt
	$(IMAGE_VENV)/bin/pip install -q --no-deps -e .  # the archc command for the tests; on the machine the tree runs as is
	ls gpu-pack/wheels/*.whl >/dev/null 2>&1 || $(PY) bench/gpu/pack.py --no-data
	rm -rf $(IMAGE_WORK)
	$(IMAGE_VENV)/bin/python bench/gpu/dryrun.py --wheels --keep $(IMAGE_WORK)
	PYTHONPATH=$(CURDIR):$(CURDIR)/$(IMAGE_WORK)/home/site $(IMAGE_VENV)/bin/python -m pytest -q -m "not slow" -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
