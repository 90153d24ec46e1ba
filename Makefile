# Two commands set everything up:
#   make quickstart   trains, scores, exports and queries a model on the bundled sample
#   make test         runs the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MINILM := .cache/minilm/model
RUN ?= runs/sample

.PHONY: quickstart test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[train,plots]"
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[train,test,jax]"
	touch $(VENV)/.installed $@

$(MINILM)/config.json: | $(BIN)/python
	$(BIN)/python scripts/fetch_minilm.py .cache/minilm

quickstart: $(VENV)/.installed $(MINILM)/config.json
	$(BIN)/python -m bner.ner.task \
		--pretrained_model=$(MINILM) \
		--output_dir=$(RUN) \
		--do_train --do_eval --do_predict \
		--num_train_epochs=8 --learning_rate=1e-4 --train_batch_size=16 --document_windows=false \
		--show="Angela Merkel flew to Paris on Monday to meet officials of the European Commission ." \
		--show="Shares of Toyota rose in Tokyo after the company beat forecasts ."

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

bench: $(VENV)/.installed $(MINILM)/config.json
	$(BIN)/python bench/wnut17.py --epochs 1

clean:
	rm -rf $(VENV) .cache runs
