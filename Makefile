# The two commands a newcomer needs: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
KUBE_CACHE ?= $(HOME)/.cache/recipelib/kube-v1.20.2

.PHONY: demo test install kube lint clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

# A real kube-apiserver, built once from Debian's source package (about 4 minutes), then cached.
kube:
	bash recipelib/sandbox/build-kube.sh $(KUBE_CACHE)

demo: install kube
	$(PY) -m recipelib.sandbox.demo --out demo-output

test: install kube
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf demo-output .pytest_cache
