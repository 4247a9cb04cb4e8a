# The two commands a newcomer needs: `make demo` and `make test`. Each installs what it needs on a fresh
# Debian machine: Debian packages (apt-get, as root; otherwise the exact sudo command is printed), the
# virtual environment .venv, and a real kube-apiserver built once from Debian's source package.
VENV ?= .venv
PY := $(VENV)/bin/python
KUBE_CACHE ?= $(HOME)/.cache/recipelib/kube-v1.20.2
KUBE_BUILD_DEBS := golang-go rsync make golang-github-modern-go-reflect2-dev

.PHONY: demo test lab install kube aiperf debs-demo debs-test lint clean

# Debian packages by the command each provides ("command=package"); a package is asked for only when its
# command is missing. etcd runs the sandbox's cluster store; chromium runs the browser test (Debian's build:
# Playwright downloads no browser here); python3-venv gives `python3 -m venv` its pip on Debian.
DEBS_DEMO := python3=python3 etcd=etcd-server
DEBS_TEST := $(DEBS_DEMO) chromium=chromium

# `$(call debs,SPECS)`: install the missing ones, saying which; when not root, print the command and stop.
define debs
@missing=""; \
for spec in $(1); do command -v "$${spec%%=*}" >/dev/null 2>&1 || missing="$$missing $${spec#*=}"; done; \
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
if [ ! -x "$(KUBE_CACHE)/kube-apiserver" ] || [ ! -x "$(KUBE_CACHE)/kube-controller-manager" ]; then \
  for p in $(KUBE_BUILD_DEBS); do dpkg -s "$$p" >/dev/null 2>&1 || missing="$$missing $$p"; done; fi; \
missing=$$(printf '%s\n' $$missing | awk '!seen[$$0]++' | xargs); \
if [ -z "$$missing" ]; then exit 0; fi; \
if [ "$$(id -u)" -ne 0 ]; then \
  echo "Missing Debian packages: $$missing" >&2; \
  echo "Installing them needs root. Run this, then run make again:" >&2; \
  echo "  sudo apt-get update && sudo apt-get install -y $$missing" >&2; exit 1; fi; \
echo "Installing Debian packages (apt-get): $$missing"; \
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null
endef

debs-demo:
	$(call debs,$(DEBS_DEMO))

debs-test:
	$(call debs,$(DEBS_TEST))

$(VENV)/.installed: pyproject.toml
	@echo "Installing recipelib and its Python dependencies into $(VENV) (pip)"
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

# aiperf (NVIDIA's load generator, pinned) in its own environment .venv-aiperf: its pins (pandas~=2.3)
# clash with the main environment's. The serving load steps and their tests run it from there.
aiperf: install
	$(PY) -c "from recipelib.serving.aiperf_env import main; raise SystemExit(main())"

# A real kube-apiserver, built once from Debian's source package (about 4 minutes), then cached.
kube:
	bash recipelib/sandbox/build-kube.sh $(KUBE_CACHE)

demo: debs-demo install kube aiperf
	$(PY) -m recipelib.sandbox.demo --out demo-output

# The whole suite, the notebooks under nbmake (tests/notebooks/test_nbmake.py) and the browser test included.
test: debs-test install kube aiperf
	$(PY) -m pytest -q

# JupyterLab on the notebooks. With no cluster configured (no settings file, no KUBECONFIG, KUBE_CONTEXT or
# CLUSTER_NAME), the local sandbox is started first; it keeps running afterwards: stop it with
# `.venv/bin/python -m recipelib.sandbox stop`. As root, JupyterLab needs --allow-root.
lab: install
	@if $(PY) -c 'import sys; from recipelib.settings import load_settings; s = load_settings(); \
	sys.exit(0 if s.sandbox or not (s.kubeconfig or s.kube_context or s.cluster_name) else 1)' 2>/dev/null; then \
	  echo "No cluster configured: starting the local sandbox (stop it with: $(PY) -m recipelib.sandbox stop)"; \
	  $(MAKE) --no-print-directory debs-demo kube && $(PY) -m recipelib.sandbox start; fi
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=notebooks --MappingKernelManager.transport_encryption=auto \
	  $$([ "$$(id -u)" -eq 0 ] && echo --allow-root)

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf demo-output .pytest_cache
