# Tool-discrimination pipeline: pinned repos -> verified examples -> Phase 5/6/7 data
# (spec steps 19.1-19.5). Every stage is a file target; phases are aliases.
# `make help` lists the targets. Variables: PYTHON (a Python 3.11+), SEED.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SEED ?= 0

.DEFAULT_GOAL := help
.PHONY: help venv repos data phase5 phase6 phase7 test clean-data

VENV_STAMP := $(VENV)/.installed
REPOS := data/repos/manifest.json
REPO_EXAMPLES := data/repos_examples/manifest.json
HTML_EXAMPLES := data/html_examples/manifest.json
PHASE5_DATA := data/phase5_format/manifest.json
PHASE6_DATA := data/phase6_format/manifest.json
PHASE7_DATA := data/phase7_format/manifest.json

# The package modules each stage runs, so an edit reruns exactly the stages it affects.
COMMON_CODE := tooltrain/__init__.py tooltrain/paths.py tooltrain/io.py tooltrain/cli.py tooltrain/datacard.py
GEN_CODE := $(COMMON_CODE) tooltrain/extract.py tooltrain/generate.py tooltrain/templates.py \
	tooltrain/docstrings.py tooltrain/tools.py tooltrain/pipeline.py tooltrain/split.py \
	tooltrain/resources/general_qa.jsonl
SPLIT_CODE := $(COMMON_CODE) tooltrain/pipeline.py tooltrain/split.py

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_%/.-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sort | expand -t 14

venv: $(VENV_STAMP) ## create .venv and install requirements.txt

$(VENV_STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

repos: $(REPOS) ## 19.1 fetch the pinned source repositories into data/repos/

$(REPOS): configs/repos.toml tooltrain/repos.py scripts/clone_popular_repos.py | $(VENV_STAMP)
	$(PY) -m scripts.clone_popular_repos

$(REPO_EXAMPLES): $(REPOS) scripts/generate_repo_examples.py $(GEN_CODE)
	$(PY) -m scripts.generate_repo_examples --seed $(SEED)

$(PHASE5_DATA): $(REPOS) scripts/generate_phase5_data.py $(GEN_CODE)
	$(PY) -m scripts.generate_phase5_data --seed $(SEED)

$(HTML_EXAMPLES): $(REPOS) scripts/generate_html_examples.py tooltrain/html_examples.py \
		tooltrain/resources/html_qa.jsonl $(GEN_CODE)
	$(PY) -m scripts.generate_html_examples --seed $(SEED)

$(PHASE6_DATA): $(PHASE5_DATA) $(REPO_EXAMPLES) scripts/merge_phase6_data.py $(SPLIT_CODE)
	$(PY) -m scripts.merge_phase6_data --seed $(SEED)

$(PHASE7_DATA): $(PHASE6_DATA) $(HTML_EXAMPLES) scripts/merge_phase7_data.py $(SPLIT_CODE)
	$(PY) -m scripts.merge_phase7_data --seed $(SEED)

data: $(PHASE7_DATA) ## 19.1-19.5 every data set: repos, examples, Phase 5/6/7 splits

phase5: $(PHASE5_DATA) ## Phase 5 data set (244: 220 train / 24 valid)

phase6: $(PHASE6_DATA) ## Phase 6 data set (794: 714 train / 80 valid)

phase7: $(PHASE7_DATA) ## Phase 7 data set (824: 741 train / 83 valid)

test: $(VENV_STAMP) ## run the test suite (no network needed beyond the package index)
	$(PY) -m pytest -q

clean-data: ## remove generated data sets (keeps fetched repos and models)
	rm -rf data/repos_examples data/html_examples data/phase5_examples data/phase5_format \
		data/phase6_format data/phase7_format
