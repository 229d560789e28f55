# appvault.backup — build, lint and test entry points. `make test` needs nothing set up beforehand.
SHELL := /bin/bash
PYTHON ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
BUILD := $(CURDIR)/build
COLLECTIONS := $(BUILD)/collections
SANITY_ROOT := $(BUILD)/sanity/ansible_collections/appvault/backup
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH := true
PYTEST_ARGS ?=

.PHONY: test demo deps system-deps venv collection lint sanity unit integration faults images molecule ee bench changelog clean

test: deps lint sanity unit integration molecule

DEMO_DIR ?= $(BUILD)/demo
demo: venv collection
	@bash tests/setup/system-deps.sh demo
	$(BIN)/ansible-playbook -i playbooks/demo/inventory.yml playbooks/demo.yml -e appvault_demo_dir=$(DEMO_DIR)

deps: system-deps venv collection

system-deps:
	@bash tests/setup/system-deps.sh

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $@

# The checkout becomes importable as ansible_collections.appvault.backup without cloning into a special folder.
collection:
	@mkdir -p $(COLLECTIONS)/ansible_collections/appvault
	@ln -sfn $(CURDIR) $(COLLECTIONS)/ansible_collections/appvault/backup

lint: venv collection
	$(BIN)/ruff check .
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint --offline

# ansible-test wants the collection at a real ansible_collections/<ns>/<name> path: test a copy of the tracked files.
sanity: venv
	rm -rf $(SANITY_ROOT) && mkdir -p $(SANITY_ROOT)
	git ls-files -co --exclude-standard -z | rsync -a --from0 --files-from=- ./ $(SANITY_ROOT)/
	# its own git repository, or ansible-test would see the outer one, where build/ is ignored, and test nothing
	cd $(SANITY_ROOT) && git init -q && git add -A
	# ansible-test downloads a pip bootstrap script from outside the package registries: give it an equivalent
	@v=$$(grep -hoP "^\s+pip='\K[0-9.]+" $(VENV)/lib/python*/site-packages/ansible_test/_internal/python_requirements.py); \
	  mkdir -p $$HOME/.ansible/test/cache && cp tests/setup/get_pip_shim.py $$HOME/.ansible/test/cache/get_pip_$${v//./_}.py
	cd $(SANITY_ROOT) && $(BIN)/ansible-test sanity --venv --python 3.11 --color no

unit: venv collection
	$(BIN)/pytest -q tests/unit $(PYTEST_ARGS)

integration: deps
	$(BIN)/pytest -q tests/integration $(PYTEST_ARGS)

# Fault injection (root: tmpfs, chattr): every case, then docs/reliability.md regenerated from the results. Not in
# `make test`: 32 cases took 11:31 on a quiet 2-core machine, 23:34 beside other work (docs/reliability.md gives the time
# of its run).
faults: deps
	$(BIN)/pytest -q -p no:cacheprovider tests/faults $(PYTEST_ARGS); status=$$?; \
	  $(BIN)/python tests/faults/render.py && echo "docs/reliability.md regenerated"; exit $$status

# Test hosts for molecule: podman containers from a debootstrap image, built once per machine and then reused.
images: system-deps
	@bash tests/setup/images.sh bookworm >/dev/null

# Each scenario in extensions/molecule runs on its own fresh host (real SSH); all run, then the summary decides.
MOLECULE_SCENARIOS ?= backup_restore_postgresql backup_restore_mariadb restore_failure schedule migrate migrate_cross_version migrate_failure
molecule: deps images
	@passed=0; failed=0; for scenario in $(MOLECULE_SCENARIOS); do start=$$SECONDS; \
	  if PATH=$(BIN):$$PATH $(BIN)/molecule test -s $$scenario; then passed=$$((passed + 1)); result=passed; \
	  else failed=$$((failed + 1)); result=FAILED; fi; \
	  echo "molecule $$scenario: $$result in $$((SECONDS - start)) s"; done; \
	  echo "molecule: $$passed passed, $$failed failed"; [ $$failed = 0 ]

# The AWX execution environment's build context (docs/awx.md): the collection as a tarball, then ansible-builder.
# Building the image from it needs the base image's registry: ansible-builder build, or podman build in EE_DIR/context.
# The definition names the tarball by this path (relative to the collection root): not $(BUILD), which may move.
EE_DIR := $(CURDIR)/build/ee
ee: venv
	rm -rf $(EE_DIR) && mkdir -p $(EE_DIR)
	$(BIN)/ansible-galaxy collection build --force --output-path $(EE_DIR) .
	mv $(EE_DIR)/appvault-backup-*.tar.gz $(EE_DIR)/appvault-backup.tar.gz
	$(BIN)/ansible-builder create --file execution-environment.yml --context $(EE_DIR)/context

bench: deps
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

changelog: venv
	$(BIN)/antsibull-changelog lint

clean:
	rm -rf $(BUILD) tests/output .pytest_cache
