# pytracekit: `make test` and `make demo` each install what is missing, then run.
# Both are idempotent: a second run installs nothing.
SHELL := /bin/bash
# Debian's python: the only one that sees the OS package python3-bpfcc (`bcc`).
SYSTEM_PYTHON := /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORKLOAD := tests/workload/.build/workload
# One file per feature under deps/apt/, one Debian package per line.
APT_PACKAGES = $(shell cat deps/apt/*.txt | sed 's/\#.*//' | tr -s ' \n' ' ')
# `make bench` also compares against other tracers.
BENCH_PACKAGES = $(shell sed 's/\#.*//' deps/apt-bench.txt | tr -s ' \n' ' ')
# ... and PyPI tools (py-spy) kept in their own venv, out of the project's dependencies.
BENCH_VENV := build/bench-venv
BENCH_STAMP := $(BENCH_VENV)/.installed

.PHONY: setup system-packages install-missing demo test bench clean

setup: system-packages $(STAMP) $(WORKLOAD)

system-packages:
	@$(MAKE) --no-print-directory install-missing PACKAGES="$(APT_PACKAGES)"

install-missing:
	@missing=$$(for p in $(PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	@test -x $(PY) || $(SYSTEM_PYTHON) -m venv --system-site-packages $(VENV)
	@$(PY) -c 'import bcc' || { echo "the venv cannot import the system bcc (python3-bpfcc)"; exit 1; }
	@# compat mode: a plain .pth path entry, cheaper at start-up than an import hook
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]' --config-settings editable_mode=compat
	@touch $@

$(WORKLOAD): tests/workload/workload.c
	@mkdir -p $(dir $@)
	gcc -O0 -g -fno-omit-frame-pointer -fno-inline -pthread -o $@ $<

# The main job: what the kernel supports, then a 5-second CPU profile of a Python program
# printed as its top stacks and written as an interactive flame graph.
# In the checkout (build/ is ignored by git), not a fixed name in /tmp: the
# demo runs as root. pytracekit writes it atomically (temp file + rename).
DEMO_FLAMEGRAPH := build/demo-flamegraph.html
# The program is bundled (examples/demo_app.py, ~5 s) and run by Debian's python3: named
# Python frames (compress_chunk (demo_app.py:25)) above zlib/json/hashlib's native ones.
demo: setup
	@mkdir -p build
	$(PY) -m pytracekit doctor
	@echo
	$(PY) -m pytracekit profile -F 99 --top 10 --output $(DEMO_FLAMEGRAPH) --format flamegraph \
		-- $(SYSTEM_PYTHON) examples/demo_app.py
	@echo "flame graph written to $(DEMO_FLAMEGRAPH)"

# `make test`: the suite on two pytest-xdist workers (one per CPU here: ~10
# minutes from a fresh clone, against ~15 serially), a file per worker (--dist
# loadfile: its module fixtures are made once), the longest files dealt first
# (tests/conftest.py LONGEST_FILES, kept in that order by --no-loadscope-reorder);
# tests marked `alone` run with no other (tests/conftest.py). The workers' temp
# directories sit under a short --basetemp (paths a test hands a tool as a filter
# string stay as short as a serial run's), removed after a green run.
# PYTEST_WORKERS=1 runs serially.
PYTEST_WORKERS ?= 2
test: setup
	@if [ "$(PYTEST_WORKERS)" = 1 ]; then \
	  echo "$(PY) -m pytest -q $(PYTEST_ARGS) tests"; \
	  $(PY) -m pytest -q $(PYTEST_ARGS) tests; \
	else \
	  base=$$(mktemp -d /tmp/ptk-XXXXXX) && \
	  echo "$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder --basetemp=$$base $(PYTEST_ARGS) tests" && \
	  $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder --basetemp=$$base $(PYTEST_ARGS) tests && \
	  rm -rf $$base; \
	fi

# `make bench BENCH_ARGS="--quick unwind"`: some sections, short (bench/__main__.py)
bench: setup $(BENCH_STAMP)
	@$(MAKE) --no-print-directory install-missing PACKAGES="$(BENCH_PACKAGES)"
	$(PY) -m bench $(BENCH_ARGS)

$(BENCH_STAMP): deps/pip-bench.txt
	@test -x $(BENCH_VENV)/bin/pip || $(SYSTEM_PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --disable-pip-version-check -r deps/pip-bench.txt
	@touch $@

clean:
	rm -rf $(VENV) tests/workload/.build
