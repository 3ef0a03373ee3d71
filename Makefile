# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.demo-installed
DOCS_STAMP := $(VENV)/.docs-installed

.PHONY: install demo test lint typecheck pytest bench fuzz clean docs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,bench,docs]'
	touch $(STAMP)

install: $(STAMP)

# The demo needs only the runtime extras it exercises (rich tables, the websocket and grpc
# transports): not the dev and bench tools that `make test` installs.
$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[demo]'
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/objtransport demo

# The API reference, generated from the docstrings (mkdocs + mkdocstrings) into site/.
$(DOCS_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy --strict src

# every asyncio test runs twice, on the default loop and on uvloop (tests/conftest.py);
# PYTEST_ARGS adds options, e.g. make pytest PYTEST_ARGS="--loop uvloop -k tcp"
# Bytecode is cached even where PYTHONDONTWRITEBYTECODE is set: the suite starts some 150
# Python processes (CLI, workers, peers), each compiling src/ anew without it (~0.3 s of CPU
# each). --dist worksteal: an idle worker takes tests queued on the other, so both end
# together.
PYTEST_ARGS ?=
pytest: install test-deps
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest -q -n auto --dist worksteal --durations=15 \
	  $(PYTEST_ARGS)

test: lint typecheck pytest

# The head-of-line test over TCP (tests/test_quic_hol.py) drops packets with nftables in a
# network namespace (iproute2): installed here when missing and running as root.
.PHONY: test-deps
test-deps:
	@{ command -v nft && command -v ip; } >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq >/dev/null; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables iproute2 >/dev/null; \
	  else \
	    echo "nft or ip missing and not installable here: the TCP head-of-line test needs them" >&2; \
	  fi; }

# Benchmarks: 5 interleaved reps, ~20 min each on a quiet 2-core machine (README, "bench").
# iperf3 (Debian) is the bulk TCP baseline: installed here when missing and running as root.
# Pass options with BENCH_ARGS, e.g. make bench BENCH_ARGS="--only tcp --reps 7".
.PHONY: bench-deps bench-uvloop
bench-deps: install
	@command -v iperf3 >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq >/dev/null; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null; \
	  else \
	    echo "iperf3 is missing and cannot be installed here: apt-get install iperf3" >&2; \
	  fi; }

bench: bench-deps
	$(BIN)/python -m benchmarks --loop default $(BENCH_ARGS)

bench-uvloop: bench-deps
	$(BIN)/python -m benchmarks --loop uvloop $(BENCH_ARGS)

# Long fuzzing: every hypothesis property of tests/test_fuzz.py with FUZZ_EXAMPLES inputs,
# then FUZZ_RUNS inputs of the atheris (libFuzzer) harness when atheris installs here.
FUZZ_EXAMPLES ?= 20000
FUZZ_RUNS ?= 500000
fuzz: install
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q -p no:cacheprovider -o timeout=0 tests/test_fuzz.py
	@if $(BIN)/python -m pip install -q atheris; then \
		$(BIN)/python tests/fuzz_atheris.py -runs=$(FUZZ_RUNS) -print_final_stats=1; \
	else \
		echo "atheris does not install on this machine: its harness is skipped"; \
	fi

clean:
	rm -rf $(VENV) build dist site .pytest_cache .mypy_cache .ruff_cache
