# Shortcuts to the project's scripts.
#   make test     the whole suite, as CI runs it (scripts/test: installs, starts Kafka and
#                 PostgreSQL, ruff, pytest); extra pytest arguments: make test ARGS="tests/unit -x"
#   make faults   the fault-injection tests (tests/faults) with the long profile: several thousand
#                 events and more faults per scenario; replay a run: make faults FAULT_SEED=<seed>
#                 (the short profile runs with every `make test`)
#   make bench    every benchmark (bench/run.py): figures against baselines measured in the same
#                 run, targets printed, JSON in bench/results/; starts Kafka and PostgreSQL if
#                 not up. One benchmark: make bench ARGS="--only grader"; tiny: ARGS=--smoke
PYTHON := .venv/bin/python
ARGS ?=

.PHONY: test faults bench

test:
	scripts/test $(ARGS)

faults:
	FAULT_PROFILE=long scripts/test tests/faults -rA $(ARGS)

bench:
	scripts/bootstrap
	@set -e; \
	if [ -z "$$KAFKA_BOOTSTRAP_SERVERS" ]; then export $$(scripts/kafka start | tail -n 1); fi; \
	if [ -z "$$DATABASE_URL" ]; then export $$(scripts/postgres start | tail -n 1); fi; \
	$(PYTHON) bench/run.py $(ARGS)
