# `make demo` and `make test` do all set-up on a fresh machine (a local virtual environment in .venv).
VENV ?= .venv
STAMP := $(VENV)/.dybench-installed
PYTEST_ARGS ?=

.PHONY: install demo test clean

# The stamp holds the installed engine (cpu, gpu or none; scripts/install.sh): asking for another
# one with DYBENCH_ENGINE=... reinstalls even when the stamp is newer than its sources.
ifneq ($(filter cpu gpu none,$(DYBENCH_ENGINE)),)
ifneq ($(DYBENCH_ENGINE),$(shell cat $(STAMP) 2>/dev/null))
.PHONY: $(STAMP)
endif
endif

$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh $(VENV)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dybench demo

# pytest exits 5 when it collected no test: that is a failure here, never a silent pass.
test: $(STAMP)
	@$(VENV)/bin/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests"; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) .venv-lmms-eval .pytest_cache
