# rhovid — every target works from a fresh clone: the first one that needs Python
# creates .venv and installs the project (editable, with dev extras).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RHOVID := $(BIN)/rhovid

# Common knobs (override on the command line: make pretrain METHOD=moco RHO=4).
DATA ?= data/demo
SRC ?= data/demo-src
RUN ?= runs/$(METHOD)-$(ARCH)
METHOD ?= byol
ARCH ?= tiny
RHO ?= 2
BOX ?= slic
BOXES ?= random slic fh hog
STEPS ?= 200
DEVICE ?= cpu
WORKERS ?= 2
EVAL ?= linear
KEYS ?= rhovid
PRESET ?= $(if $(filter tiny,$(ARCH)),tiny-$(METHOD),)
SEGMENT ?= 1
# scene cuts every SEGMENT s in `make synth` (0 = none): without them a video's background is
# the shortcut its clips share, and pretraining learns that instead of the class (README, demo)
PYTEST_ARGS ?=

.PHONY: setup test test-all lint demo synth shards verify boxes pretrain eval export ablation bench clean-demo

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed ## create .venv and install rhovid (editable, dev extras)

test: setup ## the CI suite (GPU tests skip without CUDA; slow tests excluded)
	$(BIN)/pytest -q -m "not slow" $(PYTEST_ARGS)

test-all: setup ## every test, slow ones included
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check rhovid ingest store train evaluate benchmarks tests

synth: setup ## a small labelled synthetic train tree and test tree (same classes, other seed) in $(SRC)
	$(RHOVID) synth $(SRC)/train --classes 4 --per-class 6 --seconds 6 --segment-s $(SEGMENT) --seed 0
	$(RHOVID) synth $(SRC)/test --classes 4 --per-class 3 --seconds 6 --segment-s $(SEGMENT) --seed 1

shards: setup ## ingest $(SRC)/train and $(SRC)/test into $(DATA) (splits train and test)
	$(RHOVID) ingest $(SRC)/train --split train --out $(DATA) --workers $(WORKERS)
	$(RHOVID) ingest $(SRC)/test --split test --out $(DATA) --workers $(WORKERS)

verify: setup ## check $(DATA) against ingest/FORMAT.md (tars, .idx, fragment tables, index.json); exit 1 on problems
	$(RHOVID) ingest --verify --out $(DATA)

boxes: setup ## compute box prior $(BOX) for $(DATA)
	$(RHOVID) boxes $(DATA) --method $(BOX) --workers $(WORKERS)

pretrain: setup ## pretrain $(METHOD) on $(DATA) into $(RUN)
	$(RHOVID) train --data $(DATA) --method $(METHOD) --arch $(ARCH) --rho $(RHO) --steps $(STEPS) \
		--device $(DEVICE) --out $(RUN) $(if $(PRESET),--preset $(PRESET),)

eval: setup ## evaluate $(RUN) on $(DATA) ($(EVAL) = linear|knn|retrieval|finetune)
	$(RHOVID) eval $(EVAL) --data $(DATA) --run $(RUN) --device $(DEVICE)

export: setup ## $(RUN)'s backbone as a plain state dict $(RUN)/backbone.pt ($(KEYS) = rhovid|torchvision)
	$(RHOVID) export $(RUN) --out $(RUN)/backbone.pt --keys $(KEYS)

ablation: setup ## one run per box set in $(BOXES), identical seeds and budgets
	$(RHOVID) ablation --data $(DATA) --method $(METHOD) --boxes $(BOXES) --steps $(STEPS) \
		--arch $(ARCH) --device $(DEVICE) --out runs/ablation-$(METHOD)

bench: setup ## all benchmarks; results printed and written under benchmarks/results/
	$(RHOVID) bench ingest
	$(RHOVID) bench boxes
	$(RHOVID) bench loader
	$(RHOVID) bench train

demo: setup ## the whole mission on a laptop: synth -> shards -> boxes -> pretrain -> eval
	$(RHOVID) ablation demo --out data/demo-run

clean-demo:
	rm -rf data/demo data/demo-src data/demo-run
