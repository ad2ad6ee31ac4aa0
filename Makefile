# RoboAlign: every target sets itself up first (scripts/setup.sh is idempotent and quick when done).
SHELL := /bin/bash
RUN := scripts/run
PYTEST_ARGS ?=

.PHONY: setup test demo bench lint clean-build

setup:
	@scripts/setup.sh

## make test: set everything up, then lint and run the whole test suite
test: setup
	$(RUN) ruff check .
	$(RUN) python -m pytest $(PYTEST_ARGS)

## make demo: set everything up, then run the full ROS 2 stack on the simulated robot (Ctrl-C stops)
demo: setup
	$(RUN) python -m roboalign demo

## make bench: every benchmark, one summary line each
bench: setup
	$(RUN) python -m roboalign bench all

lint: setup
	$(RUN) ruff check .

clean-build:
	rm -rf ros2_ws/build ros2_ws/log .venv/.roboalign-stamps/colcon
