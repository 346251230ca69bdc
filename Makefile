# minitransformer: every target sets itself up first (a virtual environment in .venv/,
# the package installed in editable mode, the Cython kernels compiled), so any one of
# them works on a fresh machine with only Python 3 and a C compiler.
#
#   make train                 train the toy English->French model (runs/toy/)
#   make train CONFIG=tatoeba  the benchmark config on ../shared/data (runs/tatoeba/)
#   make train RESUME=1        continue the last run after Ctrl-C
#   make train OVERWRITE=1     replace the run in runs/<config>/ (kept until the new one's first checkpoint)
#   make train NP=2            data parallel over 2 MPI processes, cores/2 threads each (installs the [mpi] extra)
#   make test                  run the test suite
#   make translate TEXT="..."  translate with the last `make train` run
#   make bench                 benchmarks (bench/results/<cpu>-<isa>/)
#   make why-attention         RNNenc vs RNNsearch vs Transformer by sentence length (about 20 minutes)
#   make data                  regenerate the toy corpus, its gold alignments, its long-sentence split and the shapes images in data/ (identically)
#   make figures               redraw the figures of docs/
#   make notebooks             regenerate docs/notebooks/ from the chapters (jupytext)
#   make zoo                   run the demos of the attention variants (minitransformer/zoo/)
#   make vision                train the CNN with each vision attention module (bench/results/vision.md)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

CONFIG ?= toy
DATA   ?=
RESUME ?=
OVERWRITE ?=
TEXT   ?= the black cat sleeps .
PYTEST_ARGS ?=
NP     ?= 1

# NP > 1: the same command under mpiexec, through minitransformer/parallel/launch.py
ifeq ($(NP),1)
TRAIN := $(BIN)/minitransformer
else
TRAIN := $(BIN)/python -m minitransformer.parallel.launch -n $(NP) -m minitransformer
endif

.PHONY: setup mpi test train translate bench data figures notebooks zoo vision why-attention clean

setup: $(STAMP)

# Rebuilt whenever the build description or a kernel source changes.
$(STAMP): setup.py pyproject.toml $(wildcard csrc/*.pyx csrc/*.pxd csrc/*.h)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "setuptools>=61" wheel "Cython>=3.0" "numpy>=1.24"
	$(BIN)/python -m pip install --quiet --no-build-isolation -e '.[test]'
	touch $@

# MPI from pip (setup.py's [mpi] extra): mpi4py, and MPICH from its wheel, mpiexec included
mpi: setup
	$(BIN)/python -c "import mpi4py" 2>/dev/null && test -x $(BIN)/mpiexec || $(BIN)/python -m pip install --quiet "mpi4py>=4.1.1" mpich

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

train: setup $(if $(filter-out 1,$(NP)),mpi)
	$(TRAIN) train --config $(CONFIG) $(if $(DATA),--data $(DATA)) $(if $(RESUME),--resume) $(if $(OVERWRITE),--overwrite)

translate: setup
	$(BIN)/minitransformer translate "$(TEXT)"

# The benchmarks compare against PyTorch, installed on demand (never needed by the tests).
bench: setup
	$(MAKE) --no-print-directory mpi || echo "make bench: MPI could not be installed; bench_parallel.py is skipped"
	$(BIN)/python -c "import torch, threadpoolctl" 2>/dev/null || $(BIN)/python -m pip install --quiet "torch==2.13.0" "threadpoolctl>=3.1" \
		|| echo "make bench: PyTorch could not be installed; the peer columns are left out"
	$(BIN)/python bench/run_all.py

# RNNenc, RNNsearch and the Transformer, 5 minutes of training each, BLEU by sentence length (chapter 15)
why-attention: setup
	$(BIN)/python bench/why_attention.py $(if $(MINUTES),--minutes $(MINUTES))

data: setup
	$(BIN)/python -m minitransformer.corpus.generate --out data/
	$(BIN)/python -m minitransformer.corpus.long --out data/
	$(BIN)/python -m minitransformer.vision.shapes --out data/shapes/ --check

figures: setup
	$(BIN)/python docs/make_figures.py

# every chapter of docs/ as a Jupyter notebook in docs/notebooks/, generated, never edited
notebooks: setup
	$(BIN)/python docs/make_notebooks.py

zoo: setup
	for demo in kernel_regression scoring additive cosine vector; do \
		$(BIN)/python -m minitransformer.zoo.$$demo --seed 0 || exit 1; \
	done

# The small CNN without attention and with each of the ten modules of minitransformer/vision/,
# the same budget for all (about 10 minutes on 2 cores); writes bench/results/vision.md and .json
# and docs/images/vision-*.png.
vision: setup
	$(BIN)/python -m minitransformer.vision.train

clean:
	rm -rf $(VENV) build *.egg-info minitransformer/_ext/*.so csrc/*.c
