# The two commands of the README:
#   make run    the service on a throwaway demo directory (slapd seeded with demo users);
#               make run DIRECTORY=ad: on a Samba AD domain controller, with the README's AD example
#               make run DIRECTORY=several: on three slapds (accounts, emea, hr), several-config.yaml
#   make try    (in another terminal) Okta's example event of every hook type sent to it, answers printed
#   make test   the whole test suite (CI runs exactly this, through .ci/run)
#   make mutate mutation testing of hooks, policy, directory and federation (slow; not run by CI)
# Everything installs from the lock files; `make setup` is idempotent.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CHECKOV_VENV ?= .venv-checkov
MUTMUT_VENV ?= .venv-mutmut

.PHONY: setup system-deps run try test bench lint mutate clean

setup: system-deps $(VENV)/.installed

system-deps:
	@scripts/install-system-deps.sh

$(VENV)/.installed: requirements-dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

# checkov pins dependencies that clash with ours: it gets a venv of its own, hash-locked like ours.
$(CHECKOV_VENV)/.installed: .ci/checkov-requirements.lock
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --require-hashes --no-deps -r .ci/checkov-requirements.lock
	@touch $@

# Mutation testing (not run by CI): the dev lock plus mutmut, in a venv of its own.
$(MUTMUT_VENV)/.installed: .ci/mutmut-requirements.lock pyproject.toml
	$(PYTHON) -m venv $(MUTMUT_VENV)
	$(MUTMUT_VENV)/bin/pip install --quiet --require-hashes --no-deps -r .ci/mutmut-requirements.lock
	$(MUTMUT_VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

DIRECTORY ?= openldap
run: setup
	$(BIN)/okta-ldap-hook demo --directory $(DIRECTORY)

TRY_URL ?= http://127.0.0.1:8080
try: $(VENV)/.installed
	$(BIN)/okta-ldap-hook try --url $(TRY_URL)

test: setup $(CHECKOV_VENV)/.installed
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python bench/benchmark.py

# Mutants of the hook logic, the failure policy, the directory layer and the federation of several
# directories, against the in-process tests that exercise them (see [tool.mutmut] in pyproject.toml);
# `mutmut results` / `mutmut show` then list and show the survivors; one module's mutants alone with
# `$(MUTMUT_VENV)/bin/mutmut run "service.federation*"`. Slow (minutes to hours): not part of `make test` or CI.
mutate: setup $(MUTMUT_VENV)/.installed
	cd $(CURDIR) && $(MUTMUT_VENV)/bin/mutmut run

lint: setup
	$(BIN)/ruff check service tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(MUTMUT_VENV) mutants .pytest_cache bench-results
