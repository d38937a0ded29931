# The two commands: `make demo` and `make test`. Everything else here serves them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000
# Debian packages the tests need; installed only when absent.
APT_PACKAGES := chromium redis-server postgresql rustc libstd-rust-dev-wasm32

.PHONY: demo test venv deps dev-deps apt-deps migrate seed demo-plugin serve lint bench clean wheel

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.deps: requirements.txt pyproject.toml | $(VENV)/bin/python
	$(PIP) install --quiet -r requirements.txt
	$(PIP) install --quiet --no-deps -e .
	touch $@

$(VENV)/.dev-deps: requirements-dev.txt $(VENV)/.deps
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@

deps: $(VENV)/.deps
dev-deps: $(VENV)/.dev-deps

apt-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$$missing postgresql"; \
	[ -d /usr/lib/rustlib/wasm32-unknown-unknown ] || missing="$$missing rustc libstd-rust-dev-wasm32"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

migrate: deps
	$(PY) manage.py migrate --noinput -v0

seed: migrate
	$(PY) manage.py seed_demo

demo-plugin: migrate
	$(PY) manage.py demo_plugin

# The server and, beside it, the worker that runs plugin jobs (queue "plugin"); the worker stops
# when the server exits (Ctrl-C stops both). uvicorn, not daphne: it streams request bodies to the
# app, so gonext_plugins.asgi.RequestBodyLimit refuses an oversized one before it is buffered
# (README "Serving"). WebSocket messages from clients are capped at 64 KiB (the log page sends
# small commands; uvicorn's default is 16 MiB, times 32 queued per connection).
serve:
	$(PY) manage.py collectstatic --noinput -v0
	@echo "Serving on http://$(HOST):$(PORT)/  (admin: http://$(HOST):$(PORT)/admin/)"
	@echo "Plugin job worker: manage.py plugin_worker (stops with the server)"
	@$(PY) manage.py plugin_worker --no-reload & worker=$$!; \
	trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT; \
	$(VENV)/bin/uvicorn project.asgi:application --host $(HOST) --port $(PORT) --lifespan off \
	  --ws-max-size 65536

demo: seed demo-plugin serve

# The plugin author's site (docs/plugin-authors.md): the demo site in dev mode, where
# `manage.py plugin dev` uploads unsigned dev builds. Never expose it: dev mode skips signatures.
.PHONY: dev
dev: seed
	DEBUG=1 GONEXT_DEV_MODE=1 $(MAKE) --no-print-directory serve

# Style (ruff), DESIGN.md's layers and no import cycles (import-linter, [tool.importlinter] in
# pyproject.toml), types (mypy with django-stubs, [tool.mypy]). `make test` runs the same first.
LINT = $(VENV)/bin/ruff check . && $(VENV)/bin/lint-imports --no-cache && $(VENV)/bin/mypy

lint: dev-deps
	$(LINT)

# Two workers (pytest-xdist), each file on one worker so a module's live server starts once;
# every test takes its ports, files and databases from tmp_path or a free port.
test: apt-deps dev-deps
	$(LINT)
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile

# The installable package: dist/gonext_plugins-<version>-py3-none-any.whl (with the templates, static
# files, migrations, schemas and plugin SDKs). build/ is cleared first: setuptools would otherwise
# carry files deleted from the tree into the wheel.
wheel: | $(VENV)/bin/python
	rm -rf build
	$(PIP) wheel --quiet --no-deps --wheel-dir dist .
	@ls dist/*.whl

bench: dev-deps
	$(PY) -m benchmarks all

clean:
	rm -rf $(VENV) db.sqlite3 var build dist test-artifacts
