# Two commands: `make run` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean diarization

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# System packages, installed where apt-get can (else a note, and what needs them is skipped):
# SpeexDSP's headers, to build speexaec (the echo canceller, voice.audio.echo; PyPI has source only),
# and espeak-ng (a text-to-speech engine, and the speech the voice tests are made of).
SYSTEM_PACKAGES := libspeexdsp-dev espeak-ng
$(VENV)/.system: | $(BIN)/python
	@if dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; then :; \
	else echo "note: could not install $(SYSTEM_PACKAGES) (needs apt-get and root): voice runs without echo cancellation and espeak-ng, and their tests are skipped"; fi
	@touch $@

$(VENV)/.runtime: requirements.txt requirements-system.txt $(VENV)/.system | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	@$(BIN)/pip install -q -r requirements-system.txt || echo "note: speexaec did not build (libspeexdsp-dev missing): voice runs without echo cancellation"
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

# Speaker diarization (voice.audio.diarization), an optional install of about 1.4 GB: PyTorch's
# CPU build, librosa and Resemblyzer, whose speaker encoder ships in its wheel. Resemblyzer goes in
# without its declared dependencies: its `webrtcvad` would replace webrtcvad-wheels (same module).
diarization: $(VENV)/.runtime
	$(BIN)/pip install -q torch==2.13.0 librosa
	$(BIN)/pip install -q --no-deps resemblyzer==0.1.4
