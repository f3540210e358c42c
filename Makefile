# Set-up, run and test on a Debian 12 host, as root. Every target is idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The web UI's npm packages need npm: Debian's nodejs and npm, unless a nodejs that ships npm is installed.
NPM_PACKAGES := $(if $(shell command -v npm 2>/dev/null),,nodejs npm)
# Debian packages the daemon and its tests need (spice-html5, novnc: the web consoles' clients; chromium: their test;
# systemd: systemd-analyze checks the installed unit; jq: the README's examples).
APT_PACKAGES := python3 python3-venv python3-dev gcc pkg-config \
	libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients libvirt-dev \
	qemu-system-x86 qemu-utils ovmf swtpm swtpm-tools libxml2-utils dnsmasq-base iproute2 \
	xorriso mtools dosfstools kmod binutils openssl spice-html5 novnc chromium systemd jq \
	$(NPM_PACKAGES)

.PHONY: all deps apt venv ui services run test typecheck unit bench clean

all: deps

deps: apt venv ui

apt:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "apt-get install:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check setuptools wheel -r requirements-dev.txt
	@$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

# The web UI's browser modules (preact, htm, xterm; axe-core for its tests), pinned by package-lock.json.
UI_DIR := middlewared/plugins/webui
UI_STAMP := $(UI_DIR)/node_modules/.package-lock.json

ui: $(UI_STAMP)

$(UI_STAMP): $(UI_DIR)/package.json $(UI_DIR)/package-lock.json
	@cd $(UI_DIR) && npm ci --no-audit --no-fund --silent
	@touch $@

services:
	@scripts/ensure-libvirtd

run: deps services
	exec $(VENV)/bin/middlewared $(ARGS)

typecheck: deps
	$(VENV)/bin/mypy

test: deps services typecheck
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

unit: deps
	$(VENV)/bin/pytest -q tests/unit

bench: deps services
	$(PY) -m bench $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache $(UI_DIR)/node_modules

# --- System install (as root, idempotent) -------------------------------------------------------
# make install: a venv in /opt/middlewared, middlewared and midclt linked into /usr/local/bin, the default
# config in /etc/middlewared/ (never overwritten), the unit in /etc/systemd/system/. make uninstall removes
# them, keeping a changed config and the database. Paths: LIBDIR, BINDIR, CONFDIR, UNITDIR (see the script).
.PHONY: install uninstall
export LIBDIR BINDIR CONFDIR UNITDIR

install: apt ui
	@scripts/system-install install

uninstall:
	@scripts/system-install uninstall

# --- A guest ISO for the README's quick start ---------------------------------------------------
# make guest-iso: the tests' tiny Linux guest (Debian's kernel and busybox, cached by content hash) copied to
# GUEST_ISO, which must lie inside [storage] roots to be attached as a CDROM.
GUEST_ISO ?= /mnt/iso/middlewared-guest.iso
.PHONY: guest-iso

guest-iso: deps
	@iso=$$($(PY) -m tests.guest.build) && mkdir -p "$(dir $(GUEST_ISO))" && \
		{ cmp -s "$$iso" "$(GUEST_ISO)" || cp "$$iso" "$(GUEST_ISO)"; } && echo "$(GUEST_ISO)"
