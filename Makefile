# The two commands of the README, and the pieces CI runs.

CARGO ?= cargo

.PHONY: demo test lint fuzz bench

## demo: build everything (release) and run the one-command tour
demo:
	$(CARGO) build --release --workspace --bins
	./target/release/hvsim demo

## test: install the real clients the tests drive (apt, PyPI venv), build the
## binaries the end-to-end tests start, then run every test
test:
	scripts/test-deps.sh
	$(CARGO) build --workspace --bins
	HVSIM_PY=$(CURDIR)/target/venv/bin/python $(CARGO) test --workspace

## lint: formatting and clippy, warnings are errors
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## fuzz: build every fuzz target and run each briefly (FUZZ_SECONDS each)
FUZZ_SECONDS ?= 20
fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS)

## bench: measure the wire path against the bare limits, print a table
bench:
	scripts/bench.sh
