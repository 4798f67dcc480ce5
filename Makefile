# popray: `make demo` runs the job end to end on the bundled sample profile, `make test` runs the tests.
# Each target sets up .venv on first use, with exactly the versions in requirements.lock
# (the whole dependency tree the suite was green with); `make lock` refreshes that file.
PY := .venv/bin/python
UV := .venv/bin/uv
LOCK := requirements.lock
VENV_STAMP := .venv/.popray-installed
DEMO_DIR ?= data/demo
OUT ?= out
# the version of a package pinned in the lock file
pin = $(shell sed -n 's/^$(1)==//p' $(LOCK))

.PHONY: demo test lint format clean venv lock browser

# torch and torchvision first, with pip: where their builds lie on the machine's disk (as
# here and on CI) pip takes them from there, where uv would download ~3 GB. uv then makes
# the venv exactly the lock file (installs, upgrades and removes as needed) in seconds.
$(VENV_STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q torch==$(call pin,torch) torchvision==$(call pin,torchvision) uv==$(call pin,uv)
	$(UV) pip sync -q --python $(PY) $(LOCK)
	$(UV) pip install -q --python $(PY) --no-deps -e .
	touch $(VENV_STAMP)

venv: $(VENV_STAMP)

# Newest versions that pyproject.toml admits, torch/torchvision kept where the lock has
# them (change those by hand: their builds are large); then run `make test` before committing.
lock: $(VENV_STAMP)
	grep -E '^(torch|torchvision)==' $(LOCK) > .venv/lock-constraints.txt
	$(UV) pip compile -q pyproject.toml --extra dev --upgrade --python-version 3.11 \
	  -c .venv/lock-constraints.txt --custom-compile-command 'make lock' -o $(LOCK)

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
