# The two commands a newcomer needs:  `make run` (server on SQLite) and `make test` (the suite on SQLite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCAL_ENV := data/local.env

.PHONY: run test setup setup-dev local-env ci

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/activate
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt $(VENV)/.runtime
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

setup: $(VENV)/.runtime
setup-dev: $(VENV)/.dev

# Secrets for the embedded default, made once and kept under data/ (never committed), so every worker and every
# later start uses the same ones.
local-env:
	@mkdir -p -m 700 data
	@if [ ! -f $(LOCAL_ENV) ]; then \
		umask 077; \
		{ echo "SECRET_KEY=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))')"; \
		  echo "DEV_API_KEY=dev-$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(24))')"; \
		} > $(LOCAL_ENV); \
	fi

run: setup local-env
	@set -a; source $(LOCAL_ENV); set +a; \
	export API_KEYS="$${API_KEYS:-$$DEV_API_KEY}"; \
	$(BIN)/python manage.py migrate --no-input && \
	$(BIN)/python manage.py collectstatic --no-input --verbosity 0 && \
	echo "Development API key (client and miner endpoints): $$DEV_API_KEY" && \
	echo "Serving on http://$${API_HOST:-127.0.0.1}:$${API_PORT:-8000}  (docs at /docs)" && \
	exec $(BIN)/gunicorn -c deploy/gunicorn.conf.py aitbc_site.wsgi:application

test: setup-dev
	$(BIN)/pytest -q

ci:
	bash .ci/run
