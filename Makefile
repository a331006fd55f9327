# The README's two commands: `make run` and `make test`. Both work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint format bench clean systemd-analyze chromium screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/picobot run --config config.yaml

test: $(STAMP) systemd-analyze chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# tests/ops runs `systemd-analyze verify` on systemd/picobot.service: install Debian's systemd
# package only when the tool is missing (if that fails, the one test is skipped, saying why).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
systemd-analyze:
	@command -v systemd-analyze >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends systemd; } || \
		echo "could not install systemd-analyze: the unit-file test will be skipped"

# tests/webui drives the web chat in Debian's chromium (headless, via Playwright): install it
# only when missing (if that fails, the browser test is skipped, saying why).
chromium:
	@command -v chromium >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; } || \
		echo "could not install chromium: the browser test will be skipped"

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# The web chat in light, dark and mobile width, for docs/ and the README.
screenshots: $(STAMP) chromium
	$(BIN)/python -m tests.webui.screenshots docs

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
