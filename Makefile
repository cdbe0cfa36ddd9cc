# The two commands a newcomer needs:  `make run` (server on SQLite) and `make test` (the suite on SQLite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Overridable, so the README test can point `make manage` at a throw-away environment.
LOCAL_ENV ?= data/local.env

.PHONY: run manage test setup setup-dev local-env ci

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
	@mkdir -p -m 700 $(dir $(LOCAL_ENV))
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
	url="http://$${API_HOST:-127.0.0.1}:$${API_PORT:-8000}" && \
	echo "Serving on $$url  (docs at $$url/docs)" && \
	echo "  API key for client and miner endpoints (DEV_API_KEY in $(LOCAL_ENV)): $$DEV_API_KEY" && \
	echo "  Operators: make manage ARGS=\"createsuperuser\", then log in at $$url/admin/" && \
	echo "  Wallets: POST /v1/users/challenge, sign its EIP-4361 message, POST /v1/users/login (README)" && \
	echo "  Fund a wallet (development): make manage ARGS=\"credit <wallet> 100 --reason dev\"" && \
	exec $(BIN)/gunicorn -c deploy/gunicorn.conf.py aitbc_site.wsgi:application

# Any management command, in the environment `make run` serves with: make manage ARGS="check". DEBUG defaults to
# true here (not in the server), since these are the development database and secrets: commands that refuse to run in
# production, such as credit, run; set DEBUG=false to see what production would answer.
manage: setup local-env
	@set -a; source $(LOCAL_ENV); set +a; \
	export API_KEYS="$${API_KEYS:-$$DEV_API_KEY}" DEBUG="$${DEBUG:-true}"; \
	exec $(BIN)/python manage.py $(ARGS)

test: setup-dev
	$(BIN)/pytest -q

ci:
	bash .ci/run
