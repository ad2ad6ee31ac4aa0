"""The sim robot's joint-trajectory following (roboalign.sim.trajectory), without ROS."""

from __future__ import annotations

import numpy as np
import pytest

from roboalign.sim.trajectory import TrajectoryFollower, interpolate


def test_interpolate_from_start_through_points_then_hold():
    times, pts, start = np.array([0.05, 0.1]), np.array([[1.0, -1.0], [2.0, -2.0]]), np.zeros(2)
    np.testing.assert_allclose(interpolate(times, pts, start, 0.0), [0.0, 0.0])
    np.testing.assert_allclose(interpolate(times, pts, start, 0.025), [0.5, -0.5])
    np.testing.assert_allclose(interpolate(times, pts, start, 0.075), [1.5, -1.5])
    np.testing.assert_allclose(interpolate(times, pts, start, 5.0), [2.0, -2.0])


def test_follower_holds_until_a_trajectory_then_tracks_it_by_stamp():
    f = TrajectoryFollower(np.array([0.0, 1.0]))
    assert f.stamp is None
    np.testing.assert_allclose(f.target(3.0), [0.0, 1.0])  # nothing commanded: hold
    f.set_trajectory(10.0, np.array([0.1, 0.2]), np.array([[1.0, 1.0], [3.0, 1.0]]))
    assert f.stamp == 10.0
    np.testing.assert_allclose(f.target(10.05), [0.5, 1.0])
    np.testing.assert_allclose(f.target(10.15), [2.0, 1.0])  # between the points: from the points alone
    np.testing.assert_allclose(f.target(11.0), [3.0, 1.0])  # held at the end
    np.testing.assert_allclose(f.target(12.0), [3.0, 1.0])


def test_newer_trajectory_starts_from_the_position_reached():
    f = TrajectoryFollower(np.zeros(1))
    f.set_trajectory(0.0, np.array([0.1]), np.array([[1.0]]))
    np.testing.assert_allclose(f.target(0.05), [0.5])
    f.set_trajectory(0.05, np.array([0.1]), np.array([[-1.0]]))  # replaces the first one
    np.testing.assert_allclose(f.target(0.1), [-0.25])  # halfway from 0.5 to -1.0
    f.reset(np.array([7.0]))
    assert f.stamp is None
    np.testing.assert_allclose(f.target(1.0), [7.0])


@pytest.mark.parametrize("times, points", [
    (np.array([0.1]), np.zeros((1, 3))),  # wrong joint count
    (np.array([0.1, 0.2]), np.zeros((1, 2))),  # times and points disagree
    (np.array([0.2, 0.1]), np.zeros((2, 2))),  # not increasing
    (np.zeros(0), np.zeros((0, 2))),  # empty
])
def test_bad_trajectories_are_refused_and_the_old_one_kept(times, points):
    f = TrajectoryFollower(np.zeros(2))
    f.set_trajectory(0.0, np.array([1.0]), np.ones((1, 2)))
    with pytest.raises(ValueError, match="trajectory"):
        f.set_trajectory(0.5, times, points)
    assert f.stamp == 0.0
    np.testing.assert_allclose(f.target(1.0), [1.0, 1.0])
