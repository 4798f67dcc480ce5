# popray: `make demo` runs the job end to end on the bundled sample profile, `make test` runs the tests.
# Each target sets up .venv on first use (torch/torchvision first, so pip takes the local-disk builds).
PY := .venv/bin/python
VENV_STAMP := .venv/.popray-installed
DEMO_DIR ?= data/demo
OUT ?= out

.PHONY: demo test lint format clean venv browser

$(VENV_STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $(VENV_STAMP)

venv: $(VENV_STAMP)

demo: $(VENV_STAMP)
	test -f $(DEMO_DIR)/posts.csv || $(PY) -m jobs.sample --out $(DEMO_DIR) --size demo --seed 7
	$(PY) -m jobs.run --input $(DEMO_DIR) --out $(OUT)

lint: $(VENV_STAMP)
	$(PY) -m ruff check popray jobs tests
	$(PY) -m ruff format --check popray jobs tests

format: $(VENV_STAMP)
	$(PY) -m ruff format popray jobs tests
	$(PY) -m ruff check --fix popray jobs tests

# The report's browser test needs Debian's chromium + chromedriver: installed here when
# missing and we may (root with apt-get, as on CI); otherwise that one test skips itself.
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      chromium chromium-driver >/dev/null; \
	  else echo "note: no chromium here; the report's browser test will be skipped"; fi; \
	fi

test: lint browser
	$(PY) -m pytest -q

clean:
	rm -rf $(OUT) $(DEMO_DIR)
