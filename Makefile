# Set-up and the two commands of the README. Everything goes into .venv; re-running is cheap.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-lanes setup clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-modelopt.txt setup.py setup.cfg
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet -c requirements.txt -r requirements-modelopt.txt
	$(BIN)/python -m pip install --quiet --no-deps nvidia-modelopt==0.47.0
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# The main job on the built-in default: generated street scenes -> bag -> the node -> masks,
# overlays and a report under out/demo/.
demo: $(STAMP)
	$(BIN)/drn-demo --out out/demo

# The whole test suite: the main lane (Kilted's rclpy, CPython 3.11, everything installed), then
# the robot lanes (tools/test_lane.sh): Jazzy's rclpy on CPython 3.12 (Noble / JetPack 7) and on
# CPython 3.10 with numpy 1.x (Jammy / JetPack 6), each set up by the README's robot pip step,
# without torch, running the tests of the node, the managed node, replay, the semantic cloud and the
# install itself.
LANE_TESTS := test/test_robot_install.py test/test_node.py test/test_node_faults.py test/test_node_managed.py \
	test/test_replay.py test/test_conversions.py test/test_semantic_cloud.py
TINY := .lanes/tiny/tiny.onnx

test: $(STAMP)
	$(BIN)/python -m pytest -q test
	$(MAKE) --no-print-directory test-lanes

test-lanes: $(STAMP)
	$(BIN)/python test/export_tiny_model.py .lanes/tiny
	bash tools/test_lane.sh jazzy-py312 3.12 $(TINY) -q $(LANE_TESTS)
	bash tools/test_lane.sh jazzy-py310 3.10 $(TINY) -q $(LANE_TESTS)

clean:
	rm -rf $(VENV) out .lint-venv .lanes
