# The two commands of the README:
#   make run    the service on a throwaway demo directory (slapd seeded with demo users)
#   make try    (in another terminal) Okta's example event of every hook type sent to it, answers printed
#   make test   the whole test suite (CI runs exactly this, through .ci/run)
# Everything installs from the lock files; `make setup` is idempotent.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CHECKOV_VENV ?= .venv-checkov

.PHONY: setup system-deps run try test bench lint clean

setup: system-deps $(VENV)/.installed

system-deps:
	@scripts/install-system-deps.sh

$(VENV)/.installed: requirements-dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

# checkov pins dependencies that clash with ours: it gets a venv of its own.
$(CHECKOV_VENV)/.installed: .ci/checkov-requirements.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet -r .ci/checkov-requirements.txt
	@touch $@

run: setup
	$(BIN)/okta-ldap-hook demo

TRY_URL ?= http://127.0.0.1:8080
try: $(VENV)/.installed
	$(BIN)/okta-ldap-hook try --url $(TRY_URL)

test: setup $(CHECKOV_VENV)/.installed
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python bench/benchmark.py

lint: setup
	$(BIN)/ruff check service tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache bench-results
