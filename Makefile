# Every target builds its own virtual environment, so a fresh machine needs only python3.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PLRP   := $(VENV)/bin/plrp
# The CPU build of torch lies on local disk; asking for it first keeps pip from pulling a CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: demo test model evaluate bench bench-gpu clean

# Two stamps: the demo needs only plrp's own dependencies; tests add the interop packages.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e .
	touch $@

# bpnet-lite pins an old torch, so it comes without its dependencies (ours keep torch at TORCH).
BPNET_LITE ?= bpnet-lite==1.1.0

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q $(TORCH) -e '.[test]'
	$(PY) -m pip install -q --no-deps $(BPNET_LITE)
	touch $@

demo: $(VENV)/.installed
	$(PLRP) demo --out demo-out/demo

test: $(VENV)/.installed-test
	$(PY) -m pytest -q tests

# Throughput tables (JSON under bench-out/); targets are checked here, never in tests.
bench: $(VENV)/.installed-test
	$(PY) benchmarks/engine.py --json bench-out/engine.json
	$(PY) benchmarks/explain.py --mbp 10 100 --out bench-out/explain.json
	$(PY) benchmarks/scaffolds.py --out bench-out/scaffolds.json
	$(PY) benchmarks/genome_scale.py --mbp 10 --out bench-out/genome_scale.json

# On a GPU node: CUDA results against the CPU, then DeepSEA-size throughput (docs/engine.md).
bench-gpu: $(VENV)/.installed-test
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH bash benchmarks/gpu.sh

clean:
	rm -rf $(VENV) demo-out bench-out

# The shipped default model and example, rebuilt from scratch with fixed seeds (see data/README.md).
MODEL_N_WINDOWS ?= 30000
MODEL_SIM_SEED  ?= 1
MODEL_SEED      ?= 0
MODEL_THREADS   ?= 2
MODEL_TRAIN_FLAGS ?= --epochs 40 --patience 4 --lr 0.001 --batch-size 64
EXAMPLE_SEED    ?= 7

model: $(VENV)/.installed
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PLRP) simulate --out $$tmp/train -n $(MODEL_N_WINDOWS) --length 200 --seed $(MODEL_SIM_SEED) && \
	$(PLRP) train --fasta $$tmp/train.fa --labels $$tmp/train.labels.tsv \
		--simulation $$tmp/train.simulation.json --seed $(MODEL_SEED) --threads $(MODEL_THREADS) \
		$(MODEL_TRAIN_FLAGS) --out plrp/data/default_model.safetensors \
		--metrics plrp/data/default_model.metrics.json
	$(PLRP) simulate --genome --n-chroms 3 --length 5000 --site-spacing 800 \
		--seed $(EXAMPLE_SEED) --out plrp/data/example

# The paper's experiment (docs/evaluation.md): LRP vs PLRP-lambda / PLRP-M against p and against
# the baselines (gradient x input, ISM, DeepLIFT-SHAP, integrated gradients), on a seeded held-out
# simulation for the shipped model (the shipped example holds too few motifs for stable means),
# then on the pair grammar with a Basset-style model trained here (fixed seeds), then on the
# shipped example (long sequences tiled with the model's window). One torch thread: on a busy
# 2-core machine two threads wait on each other and the timings become noise.
EVAL_N_WINDOWS ?= 600
EVAL_SIM_SEED  ?= 2026
EVAL_P         ?= 0,0.05,0.1,0.2,0.3,0.5,0.7
EVAL_TARGETS   ?= CTCF,CTCF_AND_TP53
EVAL_THREADS   ?= 1
EVAL_FLAGS     ?= --windows positive --threads $(EVAL_THREADS)
# PLRP-lambda is set against LRP and the baselines at these p (the default, and a larger one)
EVAL_COMPARE_P ?= 0.1,0.3
# the sparse per-base track (explain --sparsity) scored at the default p against the dense one
DEFAULT_P      ?= 0.1
EVAL_SPARSITY  ?= 0.01,0.02,0.05,0.1,0.15,0.2,0.3
# the pair grammar's model: plrp train on a seeded pair simulation
PAIR_N_WINDOWS ?= 60000
PAIR_SIM_SEED  ?= 1
PAIR_SEED      ?= 0
PAIR_TRAIN_FLAGS ?= --arch basset --arch-param channels=64,64,32 --arch-param n_hidden=32 \
	--arch-param dropout=0.3 --epochs 10 --patience 2 --threads 1

evaluate: $(VENV)/.installed-test
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PLRP) simulate --out $$tmp/heldout -n $(EVAL_N_WINDOWS) --length 200 --seed $(EVAL_SIM_SEED) && \
	awk -F'\t' '$$4 == "SPI1"' $$tmp/heldout.motifs.bed > $$tmp/heldout.spi1.bed && \
	$(PLRP) evaluate --fasta $$tmp/heldout.fa --truth $$tmp/heldout.motifs.bed \
		--ignored $$tmp/heldout.spi1.bed --target $(EVAL_TARGETS) $(EVAL_FLAGS) --p $(EVAL_P) \
		--variant lambda,m --baselines all --compare-p $(EVAL_COMPARE_P) \
		--out docs/figures/evaluation --report docs/evaluation.md --report-section heldout && \
	$(PLRP) evaluate --fasta $$tmp/heldout.fa --truth $$tmp/heldout.motifs.bed \
		--target $(EVAL_TARGETS) $(EVAL_FLAGS) --p $(DEFAULT_P) --variant lambda --baselines none \
		--sparsity $(EVAL_SPARSITY) --out docs/figures/evaluation-sparse \
		--report docs/evaluation.md --report-section sparse
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PLRP) simulate --grammar pair --out $$tmp/train -n $(PAIR_N_WINDOWS) --seed $(PAIR_SIM_SEED) && \
	mkdir -p docs/figures/evaluation-pair && \
	$(PLRP) train --fasta $$tmp/train.fa --labels $$tmp/train.labels.tsv \
		--simulation $$tmp/train.simulation.json --seed $(PAIR_SEED) $(PAIR_TRAIN_FLAGS) \
		--out $$tmp/basset-pair.safetensors --metrics docs/figures/evaluation-pair/train.metrics.json && \
	$(PLRP) simulate --grammar pair --out $$tmp/heldout -n $(EVAL_N_WINDOWS) --seed $(EVAL_SIM_SEED) && \
	$(PLRP) evaluate --model $$tmp/basset-pair.safetensors --fasta $$tmp/heldout.fa \
		--truth $$tmp/heldout.motifs.bed --ignored $$tmp/heldout.ignored.bed --motifs CTCF,TP53 \
		$(EVAL_FLAGS) --p $(EVAL_P) --variant lambda,m --baselines all --compare-p $(EVAL_COMPARE_P) \
		--out docs/figures/evaluation-pair --report docs/evaluation.md --report-section pair && \
	$(PLRP) evaluate --model $$tmp/basset-pair.safetensors --fasta $$tmp/heldout.fa \
		--truth $$tmp/heldout.motifs.bed --motifs CTCF,TP53 $(EVAL_FLAGS) --p $(DEFAULT_P) \
		--variant lambda --baselines none --sparsity $(EVAL_SPARSITY) \
		--out docs/figures/evaluation-pair-sparse --report docs/evaluation.md \
		--report-section pair-sparse
	$(PLRP) evaluate --fasta plrp/data/example.fa --truth plrp/data/example.motifs.bed \
		--target CTCF $(EVAL_FLAGS) --p $(EVAL_P) --variant lambda,m --baselines none \
		--out docs/figures/evaluation-example --report docs/evaluation.md --report-section example
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	region=$$(awk -F'\t' '$$4 == "CTCF" { s = $$2 - 45; if (s < 0) s = 0; print $$1 ":" s "-" s + 100; exit }' \
		plrp/data/example.motifs.bed) && \
	$(PLRP) explain --fasta plrp/data/example.fa --out $$tmp/example --method lrp --method plrp \
		--target CTCF --quiet && \
	$(PLRP) plot --h5 $$tmp/example.h5 --region $$region --target CTCF \
		--truth plrp/data/example.motifs.bed -o docs/figures/logo-example.png
