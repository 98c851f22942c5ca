# shift: `make demo` runs the demo on an embedded cluster, `make test` runs the tests.
# Both set up what they need on a fresh Debian 12 machine (as root, or with sudo).

SHELL        := /bin/bash
VERSION      := 0.1.0
PG_CONFIG    ?= /usr/lib/postgresql/15/bin/pg_config
SHIFT_LIBDIR ?= /usr/local/lib/shift
PYTHON       ?= /usr/bin/python3
VENV         := .venv
VPY          := $(VENV)/bin/python
STAMP_VENV   := $(VENV)/.installed
LIBDIR       := $(SHIFT_LIBDIR)/$(VERSION)
STAMP_LIB    := $(LIBDIR)/.requirements.installed
# The install script is built from the parts under sql/ (scripts/build_sql.py)
INSTALL_SQL  := build/shift--$(VERSION).sql

.PHONY: demo test setup system venv sql install install-extension install-pyfuncs uninstall clean

demo: setup
	$(VPY) -m shift_cli.demo

test: setup
	$(VPY) -m pytest tests -q

setup: system venv install

system:
	bash scripts/setup-debian.sh

venv: $(STAMP_VENV)

$(STAMP_VENV): pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test]'
	touch $@

# For your own PostgreSQL (15+, with plpython3u and pgvector): make install PG_CONFIG=/path/to/pg_config
install: install-extension install-pyfuncs

sql: $(INSTALL_SQL)

$(INSTALL_SQL): scripts/build_sql.py extension/shift.control $(wildcard sql/*.sql)
	$(PYTHON) scripts/build_sql.py $@

install-extension: $(INSTALL_SQL)
	@sharedir=$$($(PG_CONFIG) --sharedir) && \
	install -d "$$sharedir/extension" && \
	install -m 644 extension/shift.control "$$sharedir/extension/shift.control" && \
	install -m 644 $(INSTALL_SQL) "$$sharedir/extension/" && \
	echo "install: extension files in $$sharedir/extension"

# The server's Python (Debian's python3.11 under PL/Python) imports pyfuncs and its
# pinned dependencies from a versioned directory that the server's OS user can read.
install-pyfuncs: $(STAMP_LIB)
	install -d -m 755 $(LIBDIR)
	rm -rf $(LIBDIR)/pyfuncs
	cp -r pyfuncs $(LIBDIR)/pyfuncs
	find $(LIBDIR)/pyfuncs -name __pycache__ -prune -exec rm -rf {} +
	chmod -R a+rX $(LIBDIR)
	@echo "install: pyfuncs in $(LIBDIR)"

$(STAMP_LIB): pyfuncs/requirements.txt
	test -x build/pip-venv/bin/pip || $(PYTHON) -m venv build/pip-venv
	install -d -m 755 $(LIBDIR)
	build/pip-venv/bin/pip install -q --no-compile --upgrade --target $(LIBDIR) -r pyfuncs/requirements.txt
	chmod -R a+rX $(LIBDIR)
	cp pyfuncs/requirements.txt $@

uninstall:
	rm -rf $(LIBDIR)
	rm -f $$($(PG_CONFIG) --sharedir)/extension/shift.control $$($(PG_CONFIG) --sharedir)/extension/shift--*.sql

clean:
	-$(VPY) -m shift_cli.main stop 2>/dev/null
	rm -rf .shift
