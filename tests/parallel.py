"""How pytest-xdist workers share the suite (``make test`` runs ``-n 3``; ``--dist loadfile`` is the default here).

Each worker takes whole test modules, so module-scoped fixtures are built once and each module keeps its own DDS
domain (conftest), except the modules of SPLIT_BY_TEST: their tests are long and independent (test_grpo_learns:
three GRPO runs of ~2 min each from one shared setting), so they go to the workers one by one; and modules that
share a per-process cache run on one worker (SAME_WORKER_AS). Workers take the
units in collection order, which ``slowest_first`` sets: the long units start first, the short ones fill the end.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from xdist.scheduler import LoadFileScheduling

SPLIT_BY_TEST = ("test_grpo_learns.py",)
# Modules that run in the unit of another module: they share a per-process cache (tests/libero_cache.py's LIBERO
# scenes, ~10 s and ~2 GB each), built once when they share a worker.
SAME_WORKER_AS = {"test_libero_env.py": "test_expert.py"}

# The long units (a module, or module::test), in the order the workers take them: xdist hands each worker one unit,
# then one more, then the next whenever a worker runs short, so with 3 workers the three GRPO runs start on three
# different workers (the first builds the shared setting, ~40 s) beside the modules that wait on the simulator.
SLOWEST_FIRST = (
    "test_grpo_learns.py::test_grpo_raises_the_accuracy_reward_on_its_prompts",
    "test_record_e2e.py",
    "test_ros_e2e.py",
    "test_sft.py",
    "test_grpo_learns.py::test_grpo_with_wrong_rewards_does_not[negated]",
    "test_grpo_learns.py::test_grpo_with_wrong_rewards_does_not[shuffled]",
    "test_grpo_learns.py",
    "test_eval.py",
    "test_ros_nodes.py",
    "test_dataset.py",
    "test_vla.py",
    "test_expert.py",
    "test_runtime.py",
    "test_distributed_sft.py",
    "test_check_config.py",
    "test_qwen3_export.py",
)


class ModuleScheduling(LoadFileScheduling):
    """``--dist loadfile``, with the tests of SPLIT_BY_TEST's modules as units of their own and the modules of
    SAME_WORKER_AS in the unit of their partner."""

    def _split_scope(self, nodeid: str) -> str:
        module = Path(nodeid.split("::", 1)[0])
        if module.name in SPLIT_BY_TEST:
            return nodeid
        return module.with_name(SAME_WORKER_AS.get(module.name, module.name)).as_posix()


def slowest_first(items: list[pytest.Item]) -> None:
    """Sort ``items`` in place: SLOWEST_FIRST's units in that order, then the rest as collected."""
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}

    def key(item: pytest.Item) -> int:
        return rank.get(f"{item.path.name}::{item.name}", rank.get(item.path.name, len(rank)))

    items.sort(key=key)
