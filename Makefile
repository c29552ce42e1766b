# The project's commands. `make demo` and `make test` work from a clean clone on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   ?= .venv
PY     := $(VENV)/bin/python
# Runs a command with the local Airflow environment (AIRFLOW_HOME, connections, variables);
# anything already set in the caller's environment wins.
RUN    := $(PY) -m infra.local.run
STAMP  := $(VENV)/.installed-stamp

.PHONY: help install services services-stop services-status setup airflow control demo test lint bench package deploy clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt infra/mwaa/constraints-3.12.txt infra/local/install.sh infra/terraform/requirements-tools.txt
	bash infra/local/install.sh
	@touch $@

install: $(STAMP)  ## install system packages, Python 3.12 and the virtualenv (idempotent)

services: install  ## start the local S3, FTP and REST API servers (idempotent)
	$(RUN) python -m infra.local.services start

services-stop: install  ## stop the local servers
	$(RUN) python -m infra.local.services stop

services-status: install  ## show the local servers
	$(RUN) python -m infra.local.services status

setup: services  ## create databases, schemas, control tables, buckets; migrate Airflow; register tasks
	$(RUN) python -m infra.local.bootstrap

airflow: setup  ## the Airflow CLI in the local environment, e.g. make airflow ARGS='dags list'
	$(RUN) airflow $(ARGS)

control: setup  ## the control-plane CLI, e.g. make control ARGS='disable totesys_ingest'
	$(RUN) python -m include.etlkit.control $(ARGS)

demo: setup  ## seed the sample sources, run every pipeline end to end, print what landed where
	$(RUN) python -m infra.local.demo

lint: install  ## ruff
	$(VENV)/bin/ruff check .

bench: services  ## benchmarks: 1M totesys-shaped rows through extract and load; prints a table
	$(RUN) python -m bench.run $(BENCH_ARGS)

test: install  ## lint, then the whole test suite (tests start the services they need)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

package: install  ## the MWAA bundle in dist/: dags/ (DAGs, include/, sql/, constraints), plugins.zip, requirements.txt, startup.sh
	$(PY) -m infra.mwaa.package --out dist $(PACKAGE_ARGS)

# `terraform -chdir=infra/terraform output -json > .local/terraform-outputs.json` names the target;
# MWAA_BUCKET / MWAA_ENV override it. Not run in CI (needs AWS credentials).
TF_OUTPUTS ?= .local/terraform-outputs.json
deploy: package  ## upload requirements/plugins/startup, update the MWAA environment and wait, then sync dags/ (DEPLOY_ARGS=--dry-run to preview)
	$(PY) -m infra.mwaa.deploy --dist dist $(if $(wildcard $(TF_OUTPUTS)),--terraform-outputs $(TF_OUTPUTS)) $(DEPLOY_ARGS)

clean:  ## stop the servers and remove local state (keeps the virtualenv)
	-$(RUN) python -m infra.local.services stop
	rm -rf .local .airflow .airflow-test dist
