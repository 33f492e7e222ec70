# Everything from a fresh machine: `make demo` runs the main job, `make test` the tests.
# Both create .venv, install torch first (a CPU build where one is at hand), then
# layerlens with its dev extras, and Graphviz's `dot` when running as root.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.layerlens-installed

# The real-model suite (torchvision, timm, transformers) needs a torch build that
# torchvision from PyPI imports beside: its own venv.
ZOO_VENV ?= .venv-zoo
ZOO_TORCH ?= torch==2.14.1 torchvision==0.29.1
ZOO_LIBS ?= timm==1.0.31 transformers==5.24.0
ZOO_STAMP := $(ZOO_VENV)/.layerlens-installed

.PHONY: setup demo test zoo lint bench wheel-check docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml examples/plugin/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' -e examples/plugin
	@command -v dot >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz chromium chromium-driver >/dev/null; \
	  else echo "note: Graphviz 'dot' or Chromium not found; install them (e.g. apt-get install graphviz chromium chromium-driver) to render diagrams and run the browser test"; fi; }
	touch $(STAMP)

demo: setup
	$(BIN)/layerlens demo

test: setup
	$(BIN)/python -m pytest -q

$(ZOO_STAMP): pyproject.toml examples/plugin/pyproject.toml
	test -x $(ZOO_VENV)/bin/python || $(PYTHON) -m venv $(ZOO_VENV)
	$(ZOO_VENV)/bin/python -m pip install --quiet --disable-pip-version-check $(ZOO_TORCH)
	$(ZOO_VENV)/bin/python -m pip install --quiet --disable-pip-version-check $(ZOO_LIBS) -e '.[dev]' -e examples/plugin
	touch $(ZOO_STAMP)

zoo: $(ZOO_STAMP) setup
	$(ZOO_VENV)/bin/python -m pytest -q tests/zoo

# benchmarks/RESULTS.md: the fixed model set here, the real architectures in the zoo's venv
bench: setup $(ZOO_STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torchinfo
	$(ZOO_VENV)/bin/python -m pip install --quiet --disable-pip-version-check torchinfo
	$(BIN)/python -m benchmarks --real-python $(ZOO_VENV)/bin/python --out benchmarks/RESULTS.md

# The package as a user gets it: a wheel, installed in a fresh venv outside the repository.
WHEEL_DIR ?= /tmp/layerlens-wheel-check
wheel-check: setup
	rm -rf $(WHEEL_DIR) && mkdir -p $(WHEEL_DIR)
	$(BIN)/python -m pip wheel --quiet --disable-pip-version-check --no-deps -w $(WHEEL_DIR) .
	$(PYTHON) -m venv $(WHEEL_DIR)/venv
	$(WHEEL_DIR)/venv/bin/python -m pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)"
	$(WHEEL_DIR)/venv/bin/python -m pip install --quiet --disable-pip-version-check $(WHEEL_DIR)/torch_layerlens-*.whl
	cd $(WHEEL_DIR) && venv/bin/layerlens --version
	cd $(WHEEL_DIR) && venv/bin/layerlens trace torch.nn:Identity --input-size 2,3 --device cpu
	cd $(WHEEL_DIR) && venv/bin/layerlens trace torch.nn:Linear --arg in_features=3 --arg out_features=2 --input-size 4,3 --device cpu --flops
	cd $(WHEEL_DIR) && venv/bin/python -c "import torch, layerlens as ll; t = ll.trace(torch.nn.Linear(3, 2), torch.randn(4, 3)); assert t.ok, t; print(t)"
	cd $(WHEEL_DIR) && venv/bin/layerlens demo --out demo
	# the docs extra: a ten-line Sphinx project and MkDocs project draw a model from the installed wheel
	$(WHEEL_DIR)/venv/bin/python -m pip install --quiet --disable-pip-version-check "$$(ls $(WHEEL_DIR)/torch_layerlens-*.whl)[docs]"
	mkdir -p $(WHEEL_DIR)/sphinx $(WHEEL_DIR)/mkdocs/docs
	printf 'extensions = ["layerlens.sphinx"]\n' > $(WHEEL_DIR)/sphinx/conf.py
	printf 'Model\n=====\n\n.. layerlens-diagram:: torch.nn:Identity\n   :input-size: 2, 3\n\n.. layerlens-table:: torch.nn:Identity\n   :input-size: 2, 3\n' > $(WHEEL_DIR)/sphinx/index.rst
	$(WHEEL_DIR)/venv/bin/python -m sphinx -W -q -b html $(WHEEL_DIR)/sphinx $(WHEEL_DIR)/sphinx/out
	ls $(WHEEL_DIR)/sphinx/out/_images/layerlens-*.svg
	printf 'site_name: check\nplugins:\n  - layerlens\n' > $(WHEEL_DIR)/mkdocs/mkdocs.yml
	printf '# Model\n\n```layerlens\nmodel: torch.nn:Identity\ninput_size: [2, 3]\n```\n' > $(WHEEL_DIR)/mkdocs/docs/index.md
	cd $(WHEEL_DIR)/mkdocs && ../venv/bin/python -m mkdocs build --strict --quiet
	ls $(WHEEL_DIR)/mkdocs/site/assets/layerlens/layerlens-*.svg
	# a notebook cell showing a trace, executed by a Jupyter kernel of the wheel's venv
	$(WHEEL_DIR)/venv/bin/python -m pip install --quiet --disable-pip-version-check nbclient nbformat ipykernel
	cp tests/scripts/notebook_cell.py $(WHEEL_DIR)/ && cd $(WHEEL_DIR) && venv/bin/python notebook_cell.py

lint: setup
	$(BIN)/ruff check layerlens tests examples docs benchmarks
	$(BIN)/ruff format --check layerlens tests examples docs benchmarks
	$(BIN)/mypy layerlens benchmarks

# The documentation site (Sphinx + MyST): every diagram and table is traced by layerlens's
# own directives at build time, the real models among them, so it builds in the zoo's venv.
DOCS_OUT ?= docs/_build/html
docs: $(ZOO_STAMP) setup
	rm -rf $(DOCS_OUT)
	$(ZOO_VENV)/bin/python -m sphinx -W --keep-going -q -b html -d docs/_build/doctrees docs $(DOCS_OUT)
	@echo "docs built in $(DOCS_OUT)/index.html"

clean:
	rm -rf $(VENV) $(ZOO_VENV) layerlens-demo docs/_build .pytest_cache .mypy_cache .ruff_cache .hypothesis
