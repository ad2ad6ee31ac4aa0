# RoboAlign: every target sets itself up first (scripts/setup.sh is idempotent and quick when done).
SHELL := /bin/bash
RUN := scripts/run
PYTEST_ARGS ?=
# pytest-xdist workers of `make test` (ROS tests mostly wait on DDS, so 3 keep 2 cores busy)
TEST_JOBS ?= 3
# the modules with tests marked `serial` (collected alone in the serial pass unless PYTEST_ARGS names tests)
SERIAL_FILES := $(shell grep -l "pytest.mark.serial" tests/test_*.py)

.PHONY: setup test demo bench lint clean-build

setup:
	@scripts/setup.sh

## make test: set everything up, then lint and run the whole test suite: the modules spread over $(TEST_JOBS)
## workers, then the tests marked `serial` (they measure rates) alone. Exit status 5 (no test selected) counts as
## a pass, for PYTEST_ARGS that select tests of one pass only.
test: setup
	$(RUN) ruff check .
	a=0; b=0; \
	$(RUN) python -m pytest -n $(TEST_JOBS) -m "not serial" $(PYTEST_ARGS) || a=$$?; \
	$(RUN) python -m pytest -m serial $(or $(PYTEST_ARGS),$(SERIAL_FILES)) || b=$$?; \
	[ $$a -eq 5 ] && a=0; [ $$b -eq 5 ] && b=0; \
	exit $$(( a != 0 || b != 0 ))

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
