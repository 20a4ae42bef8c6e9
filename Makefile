# rgbdcast: `make demo` runs the mock server; `make test` runs lint, types and tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_SECONDS ?=
# The demo stays on this machine unless told otherwise: bind and announce on loopback.
# `make demo DEMO_BIND=0.0.0.0 DEMO_INTERFACES=` serves the LAN (announce on every interface).
DEMO_BIND ?= 127.0.0.1
DEMO_INTERFACES ?= 127.0.0.1

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml setup.py src/rgbdcast/codecs/_native.c src/rgbdcast/geometry/_native.c
	@# pyrealsense2 needs libusb-1.0 (Debian: libusb-1.0-0); install it where we can
	@if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    (apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libusb-1.0-0 >/dev/null)) \
	    || echo "note: could not install libusb-1.0; RealSense support will not load"; \
	  else echo "note: install libusb-1.0 for RealSense support (Debian: libusb-1.0-0)"; fi; \
	fi
	@# the web viewer's browser tests drive Debian's Chromium (Playwright cannot download one here)
	@if ! command -v chromium >/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    (apt-get install -y -q chromium >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null)) \
	    || echo "note: could not install chromium; the browser tests will skip"; \
	  else echo "note: install chromium (Debian: apt-get install chromium) for the browser tests"; fi; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench,webcam,realsense,zenoh,icp,foxglove,video]'
	touch $(STAMP)

demo: $(STAMP)
	RGBDCAST_BIND=$(DEMO_BIND) RGBDCAST_INTERFACES=$(DEMO_INTERFACES) \
	  $(BIN)/rgbdcast demo $(if $(DEMO_SECONDS),--duration $(DEMO_SECONDS))

lint: $(STAMP)
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests examples
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench3d]'
	RGBDCAST_BIND=127.0.0.1 RGBDCAST_INTERFACES=127.0.0.1 $(BIN)/rgbdcast bench --write BENCHMARKS.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-output
