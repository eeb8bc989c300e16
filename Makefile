# Two commands: `make run` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# System libraries that wheels in requirements.txt build against: SpeexDSP's headers for
# speexaec (the echo canceller, voice.audio.echo), which PyPI has only as source.
SYSTEM_HEADERS := /usr/include/speex/speex_echo.h
$(SYSTEM_HEADERS):
	@command -v apt-get >/dev/null || { echo "install SpeexDSP's development files (Debian: libspeexdsp-dev)"; exit 1; }
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libspeexdsp-dev >/dev/null

$(VENV)/.runtime: requirements.txt $(SYSTEM_HEADERS) | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt $(VENV)/.runtime
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py ensure_console_groups
	$(BIN)/python manage.py ensure_admin
	$(BIN)/python manage.py serve --host 127.0.0.1 --port 8000

test: $(VENV)/.dev
	$(BIN)/python manage.py test --noinput $(TESTS)

lint: $(VENV)/.dev
	$(BIN)/ruff check .

bench: $(VENV)/.dev
	$(BIN)/python bench/inbound.py

clean:
	rm -rf $(VENV) db.sqlite3 test_db.sqlite3
