# rktcfg: `make demo` and `make test` set everything up from a fresh Debian machine.
# Every step is idempotent: a second `make test` installs nothing that is already there.

PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: all test lint typecheck pytest demo bench clean check-deps host-deps venv

all: test

# --- host (Debian) packages ---------------------------------------------------------------
# tools/host-deps lists each host dependency with the Debian package that provides it.
check-deps:
	@tools/host-deps report

host-deps:
	@missing="$$(tools/host-deps missing)"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	else \
		echo "missing Debian packages (install them with: sudo apt-get install -y $$missing)"; \
	fi

# --- Python environment --------------------------------------------------------------------
$(PY):
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); exit 1; }
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip

# editable_mode=compat: a plain .pth path entry. The default editable finder costs ~20 ms
# on every interpreter start in the venv, which would swamp the start-up benchmark.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --disable-pip-version-check \
		--config-settings editable_mode=compat -e '.[dev]'
	touch $@

venv: host-deps $(STAMP)

# --- checks and tests -----------------------------------------------------------------------
lint: venv
	$(VENV)/bin/ruff check rktcfg tests bench tools
	$(VENV)/bin/ruff format --check rktcfg tests bench tools

typecheck: venv
	$(VENV)/bin/mypy --strict rktcfg

pytest: venv
	tools/run-pytest $(PY) $(PYTEST_ARGS)

test: lint typecheck pytest

# --- the main job ---------------------------------------------------------------------------
DEMO_DIR ?= $(CURDIR)/build/demo
DEMO     := $(VENV)/bin/rktcfg --dir $(DEMO_DIR)/data

# What the default-flavor demo pod prints: its hostname, its PID, and its memory limit.
DEMO_DEFAULT_SH := echo hello from \$$(hostname), PID \$$\$$, memory limit \$$(cat \
	/sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/unified/memory.max 2>/dev/null)

demo: venv
	$(VENV)/bin/rktcfg version
	$(VENV)/bin/rktcfg config --show-origin
	mkdir -p $(DEMO_DIR)
	examples/images/busybox/build $(DEMO_DIR)/busybox.aci $(VENV)/bin/rktcfg
	$(DEMO) fetch $(DEMO_DIR)/busybox.aci
	$(DEMO) image list
	$(DEMO) image cat-manifest example.com/busybox:1.35
	$(DEMO) image extract --overwrite --rootfs-only example.com/busybox $(DEMO_DIR)/rootfs
	@if [ "$$(id -u)" = 0 ]; then \
		chroot $(DEMO_DIR)/rootfs /bin/busybox echo "hello from the example.com/busybox rootfs"; \
		$(DEMO) run --stage1 fly --name demo-$$$$ example.com/busybox --exec /bin/echo -- \
			"hello from a fly pod"; \
		$(DEMO) run --name demo-default-$$$$ example.com/busybox --memory 64Mi --cpu 500m \
			--exec /bin/sh -- -c "$(DEMO_DEFAULT_SH)"; \
		$(DEMO) apply examples/pods/web.yaml --wait=60s; \
		$(DEMO) list; \
		$(DEMO) plan examples/pods/web.yaml; \
		echo "GET http://127.0.0.1:18080/ (web's port 8080, published on the host's 18080):"; \
		$(PY) -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:18080/", timeout=10).read().decode().strip())'; \
		$(DEMO) delete examples/pods/web.yaml; \
		$(DEMO) gc --grace-period 0; \
	else echo "(not root: the fly flavor needs root; not running a pod)"; fi

bench: venv
	$(PY) bench/cli_start.py
	$(PY) bench/image_list.py
	$(PY) bench/image_import.py
	$(PY) bench/pod_start.py
	$(PY) bench/apply_noop.py
	$(PY) bench/net.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
