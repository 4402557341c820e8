# tiny_node developer entry points.  Everything runs from the project's own .venv,
# created on first use; the editable install is redone only when the packaging files change.
# The demos and the benchmark install what the node runs on (RUN_EXTRAS); the tests, lint and
# colcon everything (EXTRAS: torch for the factory, pytest, ruff, mypy, colcon) into the same venv.
#
#   make demo     a short part of the scenario suite, rules only vs model + rules
#   make demo-dds the node in its own process driven over DDS (tiny-node demo)
#   make test     lint + type check + tests (what CI runs)
#   make test-jazzy the node's DDS tests on ROS 2 Jazzy's rclpy (own venv .venv-jazzy; CI runs it too)
#   make lint     ruff + mypy only
#   make bench    the latency benchmark (tiny-node bench), with stress-ng for the load
#   make colcon   colcon build into build/ install/ log/ (ROS layout)
#   make clean    remove build products (keeps .venv); make distclean also removes .venv, .venv-jazzy

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tiny_node-dev.stamp
EXTRAS ?= ros,dev,ncap,train
RUN_STAMP  := $(VENV)/.tiny_node-run.stamp
RUN_EXTRAS ?= ros,ncap
PACKAGING  := setup.py setup.cfg package.xml pyproject.toml

.PHONY: venv demo demo-dds test test-jazzy lint bench colcon clean distclean

venv: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PACKAGING) | $(BIN)/python
	$(BIN)/python -m pip install -e '.[$(EXTRAS)]'
	touch $@

# The node's own dependencies only (no torch: 0.75 GB installed): what a vehicle or a demo needs. A full
# install newer than the packaging files has them already.
$(RUN_STAMP): $(PACKAGING) | $(BIN)/python
	@if [ -f $(STAMP) ] && [ -z "$$(find $(PACKAGING) -newer $(STAMP))" ]; then \
	  echo "$(VENV) has the full install ($(EXTRAS))"; \
	else \
	  $(BIN)/python -m pip install -e '.[$(RUN_EXTRAS)]'; \
	fi
	touch $@

# The built-in default model when it ships, else the generated test model.
DEMO_MODEL ?= $(if $(wildcard tiny_node/data/default_model/manifest.yaml),default,test)

demo: $(RUN_STAMP)
	$(BIN)/tiny-node sim --suite smoke --compare --model $(DEMO_MODEL) --out out/demo --no-resume

# The node in its own process over real DDS, closed loop on its brake decisions.
demo-dds: $(RUN_STAMP)
	$(BIN)/tiny-node demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy tiny_node

test: lint
	$(BIN)/pytest -q

# The node, its bag replay and its real-time loop over DDS with Jazzy's rclpy (7.x, Fast DDS 2):
# the main venv has Kilted's, and an API only Kilted has once broke the node on Jazzy.
JAZZY_VENV  ?= .venv-jazzy
JAZZY_STAMP := $(JAZZY_VENV)/.tiny_node-jazzy.stamp
JAZZY_TESTS ?= test/test_node_dds.py test/test_node_model.py test/test_realtime.py test/test_bag.py

$(JAZZY_STAMP): setup.py test/jazzy-requirements.txt
	$(PYTHON) -m venv $(JAZZY_VENV)
	$(JAZZY_VENV)/bin/python -m pip install -r test/jazzy-requirements.txt -e .
	touch $@

test-jazzy: $(JAZZY_STAMP)
	$(JAZZY_VENV)/bin/python -c "import rclpy, importlib.metadata as m; print('rclpy', m.version('ros-rclpy'))"
	$(JAZZY_VENV)/bin/pytest -q -p no:cacheprovider $(JAZZY_TESTS)

bench: $(RUN_STAMP)
	@if ! command -v stress-ng >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing stress-ng (Debian package) for the CPU-load runs"; \
	    apt-get install -y -q stress-ng || { apt-get update -q && apt-get install -y -q stress-ng; } \
	      || echo "could not install stress-ng: the benchmark runs without the CPU-load scenarios"; \
	  else \
	    echo "stress-ng is missing: install it with 'apt-get install -y stress-ng' as root"; \
	    echo "(the benchmark runs without the CPU-load scenarios until then)"; \
	  fi; \
	fi
	$(BIN)/tiny-node bench

colcon: $(STAMP)
	$(BIN)/colcon --log-base log build --base-paths . --build-base build --install-base install
	@# colcon writes setup.bash only with colcon-bash (a ROS install has it); setup.sh always
	@if [ -f install/setup.bash ]; then echo "now: source install/setup.bash (or install/local_setup.bash on top of a ROS install)"; \
	else echo "now: . install/setup.sh (or . install/local_setup.sh on top of a ROS install)"; fi

clean:
	rm -rf build install log .pytest_cache .mypy_cache .ruff_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(JAZZY_VENV)
