"""The two action spaces and the Franka joint limits."""

from __future__ import annotations

import numpy as np
import pytest

from roboalign.spec.action_space import (
    ACTION_SPACES,
    FR3_HOME,
    FR3_JOINT_NAMES,
    FR3_LIMITS,
    PANDA_LIMITS,
    STATE_NAMES,
    ActionSpace,
    JointLimits,
    eef_delta,
    get_action_space,
    joint_position,
    make_joint_position,
)


def test_registered_spaces():
    assert set(ACTION_SPACES) == {"eef_delta", "joint_position"}
    assert eef_delta.dim == 7 and eef_delta.gripper_index == 6 and eef_delta.kind == "delta"
    assert joint_position.dim == 8 and joint_position.gripper_index == 7 and joint_position.kind == "absolute"
    assert joint_position.names == FR3_JOINT_NAMES + ("gripper",)
    assert joint_position.arm_indices == list(range(7))
    assert STATE_NAMES[:7] == FR3_JOINT_NAMES
    assert joint_position.joint_limits is FR3_LIMITS
    assert eef_delta.dt == pytest.approx(0.05)


def test_get_action_space_error_lists_valid_names():
    assert get_action_space("eef_delta") is eef_delta
    with pytest.raises(ValueError, match="eef_delta, joint_position"):
        get_action_space("cartesian")


def test_franka_limits():
    for lim in (FR3_LIMITS, PANDA_LIMITS):
        assert len(lim.lower) == len(lim.upper) == len(lim.velocity) == 7
        assert all(lo < hi for lo, hi in zip(lim.lower, lim.upper, strict=True))
    assert FR3_LIMITS.lower[5] == pytest.approx(0.5445) and FR3_LIMITS.velocity[4] == pytest.approx(5.26)
    home = np.array(FR3_HOME)  # the FR3 ready pose
    assert FR3_LIMITS.violations(home) == []
    bad = home.copy()
    bad[3] = 0.1  # joint 4 must stay negative
    bad[5] = 0.0  # joint 6 below the FR3's 0.5445
    assert FR3_LIMITS.violations(bad) == [3, 5]
    np.testing.assert_allclose(FR3_LIMITS.clip(bad)[[3, 5]], [-0.1518, 0.5445])
    with pytest.raises(ValueError, match="lower"):
        JointLimits("x", (1.0,), (0.0,), (1.0,))


def test_validate_and_clip():
    a = np.zeros((3, 8), np.float32)
    a[:, :7] = [0.0, 0.0, 0.0, -2.0, 0.0, 5.0, 0.0]  # joint 6 above the FR3 limit
    a[:, 7] = 3.0
    c = joint_position.clip(a)
    assert c[0, 5] == pytest.approx(4.5169) and c[0, 7] == 1.0
    with pytest.raises(ValueError, match="last dimension must be 8"):
        joint_position.validate(np.zeros((2, 7)))
    a[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"row \[1\]"):
        joint_position.validate(a)


def test_renaming_and_roundtrip(tmp_path):
    ur = joint_position.with_joint_names([f"j{i}" for i in range(7)])
    assert ur.names[-1] == "gripper" and ur.names[0] == "j0"
    with pytest.raises(ValueError, match="7 joint names"):
        joint_position.with_joint_names(["a"])
    for space in (eef_delta, joint_position, ur, make_joint_position(limits=PANDA_LIMITS)):
        assert ActionSpace.from_dict(space.to_dict()) == space
    joint_position.save(tmp_path)
    assert ActionSpace.load(tmp_path) == joint_position
    (tmp_path / "action_space.json").write_text('{"name": "x"}')
    with pytest.raises(ValueError, match=r"action_space.json: missing field\(s\) \['names', 'gripper_index'"):
        ActionSpace.load(tmp_path)


def test_bad_definitions_are_rejected():
    with pytest.raises(ValueError, match="gripper_index"):
        ActionSpace("x", ("a", "b"), 2, "delta", ("u", "u"), (0, 0), (1, 1))
    with pytest.raises(ValueError, match="kind"):
        ActionSpace("x", ("a", "b"), 1, "velocity", ("u", "u"), (0, 0), (1, 1))
    with pytest.raises(ValueError, match="duplicate"):
        ActionSpace("x", ("a", "a"), 1, "delta", ("u", "u"), (0, 0), (1, 1))
