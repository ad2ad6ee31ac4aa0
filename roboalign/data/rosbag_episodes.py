"""A recorded rosbag2 episode -> a training :class:`~roboalign.data.episodes.Episode` on the control grid.

The grid is the bridge's control ticks: the stamps of its commanded trajectories (one per tick, from the first
tick at which every stream has a message), or with ``fps`` a regular grid ``t_k = t_0 + k / fps`` in phase with
them (resampling), or from the first moment every stream has a message when nothing was commanded (kinesthetic
teaching). At each tick every stream is sampled as the newest message at or before it (what the bridge saw);
streams are checked for stalls and clock jumps first (:func:`~roboalign.data.bag_streams.check_clock`).

What is written, in the ``joint_position`` action space's names and units (rad, gripper command -1 open .. +1
closed):

- ``state`` (T, 8): measured joints at t_k + gripper width [m] (sum of the finger joints);
- ``actions["joint_position"]`` (T, 8): by default the *measured* action, the joints measured at t_{k+1} and the
  commanded gripper (as ``roboalign collect`` writes it); ``action_source="commanded"`` uses the command;
- ``robot["joint_position_command"]`` (T, 8): the *commanded* targets for t_{k+1} (the bridge's trajectory
  after its safety layer, interpolated at t_k + dt) and gripper command: both kept whichever is the action;
- ``robot["joint_vel"]`` (T, 7), ``robot["gripper_qpos"]`` (T, 2), ``robot["tick_time"]`` (T,) seconds from
  ``meta["t0_ns"]``; ``images[camera]`` (T, H, W, 3) RGB;
- ``meta``: source bag, outcome, ``complete``, grid, per-topic time source, policy backend, recorder info.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from roboalign.data.bag_streams import (
    BagEpisode,
    Stream,
    camera_name,
    check_clock,
    check_monotone,
    read_bag_episode,
    sample_index,
)
from roboalign.data.episodes import Episode
from roboalign.spec.action_space import FR3_JOINT_NAMES, STATE_NAMES, get_action_space

DEFAULT_FPS = 20.0


@dataclass(frozen=True)
class BagOptions:
    """How to turn a bag into an episode. ``cameras``: required camera names (None: every image topic)."""

    fps: float | None = None
    cameras: tuple[str, ...] | None = None
    joint_names: tuple[str, ...] = FR3_JOINT_NAMES
    max_gap_s: float = 0.5
    action_source: str = "measured"  # measured | commanded

    def __post_init__(self) -> None:
        if self.action_source not in ("measured", "commanded"):
            raise ValueError(f"action_source {self.action_source!r}; valid: measured, commanded")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")


def _one(ep: BagEpisode, role: str, required: bool) -> Stream | None:
    streams = [s for s in ep.by_role(role) if len(s)]
    if len(streams) > 1:
        raise ep.error(None, f"{len(streams)} {role} topics {[s.topic for s in streams]}; expected one")
    if not streams and required:
        empty = [s.topic for s in ep.by_role(role)]
        what = f"topic(s) {empty} have no messages" if empty else "no such topic"
        raise ep.error(None, f"no {role} stream ({what}); topics in the bag: {sorted(ep.streams)}")
    return streams[0] if streams else None


def _cameras(ep: BagEpisode, wanted: tuple[str, ...] | None) -> dict[str, Stream]:
    """The camera streams to use: ``wanted``, else the cameras the bridge was configured with (recorder info),
    else every recorded image topic."""
    cams = {camera_name(s.topic): s for s in ep.by_role("camera")}
    configured = ep.info.get("info", {}).get("camera_topics")
    if wanted is None and configured:
        missing = [t for t in configured if camera_name(t) not in cams]
        if missing:
            raise ep.error(missing[0], f"configured camera topic has no messages in the bag (missing topic); "
                                       f"recorded cameras: {sorted(cams)}")
        wanted = tuple(camera_name(t) for t in configured)
    for name in wanted or ():
        if name not in cams:
            raise ep.error(None, f"camera {name!r} is not recorded; recorded cameras: {sorted(cams)} (topics "
                                 f"{sorted(ep.streams)})")
        if not len(cams[name]):
            raise ep.error(cams[name].topic, f"camera {name!r} has no messages (missing topic)")
    keep = wanted if wanted is not None else tuple(sorted(k for k, s in cams.items() if len(s)))
    return {k: cams[k] for k in keep}


def _grid(ep: BagEpisode, cmd: Stream | None, streams: list[Stream], fps: float, regular: bool) -> np.ndarray:
    """The control ticks: the commanded trajectories' stamps (the bridge's own ticks), or a regular grid at ``fps``
    in phase with them (``regular``, e.g. resampling), or from the first moment every stream has data."""
    dt = int(round(1e9 / fps))
    t_start = max(int(s.times[0]) for s in streams)
    t_end = min(int(s.times[-1]) for s in streams)
    if cmd is not None and not regular:
        ticks = cmd.times[(cmd.times >= t_start - dt // 4) & (cmd.times <= t_end)]
        if len(ticks) and ticks[-1] + dt <= t_end + dt // 4:  # the tick after the last command: its result
            ticks = np.r_[ticks, ticks[-1] + dt]
        grid = ticks
    else:
        if cmd is not None and len(cmd) > 1:  # in phase with the command ticks (their median phase)
            period = int(np.median(np.diff(cmd.times)))
            rel = cmd.times - cmd.times[0]
            phase = int(np.median((rel + period // 2) % period - period // 2))
            t_start += (int(cmd.times[0]) + phase - t_start) % period
            t_end = min(t_end, int(cmd.times[-1]) + period)
        n = (t_end - t_start + dt // 4) // dt + 1
        grid = t_start + np.arange(max(n, 0), dtype=np.int64) * dt
    if len(grid) < 2:
        raise ep.error(cmd.topic if cmd else None, f"only {len(grid)} control tick(s) where every stream has data "
                                                   f"(first messages at {[(s.topic, s.times[0]) for s in streams]})")
    return grid


RUNNING = 2  # roboalign_msgs/EpisodeStatus.PHASE_RUNNING


def _running(ep: BagEpisode, grid: np.ndarray, eps: int) -> tuple[np.ndarray, dict[str, int] | None]:
    """The ticks of the RUNNING phase (+ the one after, for its measured result) when the bridge's EpisodeStatus
    was recorded: homing before and holding after the demonstration are not training data."""
    status = _one(ep, "status", required=False)
    if status is None:
        return grid, None
    phases = np.array([ep.decode(status, i).phase for i in range(len(status))])
    idx = sample_index(status.times, grid, eps)
    at = np.where(idx >= 0, phases[np.maximum(idx, 0)], -1)
    run = np.flatnonzero(at == RUNNING)
    if not len(run):
        raise ep.error(status.topic, f"the episode never ran: phases recorded {sorted(set(phases.tolist()))} "
                                     f"(RUNNING = {RUNNING}); nothing to learn from")
    dropped = {"before_running": int(run[0]), "after_running": int(max(len(grid) - run[-1] - 2, 0))}
    return grid[run[0]:run[-1] + 2], dropped


def _fps(ep: BagEpisode, cmd: Stream | None, opts: BagOptions) -> float:
    if opts.fps is not None:
        return float(opts.fps)
    if cmd is not None and len(cmd) > 2:  # the command rate, snapped to a whole rate within 1 % (timer jitter)
        rate = 1e9 / float(np.median(np.diff(cmd.times)))
        return float(round(rate)) if abs(rate - round(rate)) < 0.01 * rate else round(rate, 3)
    return float(ep.info.get("info", {}).get("control_rate_hz", DEFAULT_FPS))


def _joint_states(ep: BagEpisode, js: Stream, idx: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    q, v, fingers = [], [], []
    for i in idx:
        m = ep.decode(js, int(i))
        pos = dict(zip(m.name, np.asarray(m.position, np.float64), strict=False))
        missing = [n for n in names if n not in pos]
        if missing:
            raise ep.error(js.topic, f"joints {missing} not in the JointState (it has {list(m.name)}); set the "
                                     "joint names to the robot's")
        vel = dict(zip(m.name, np.asarray(m.velocity, np.float64), strict=False))
        q.append([pos[n] for n in names])
        v.append([vel.get(n, 0.0) for n in names])
        fingers.append([pos[n] for n in m.name if "finger" in n][:2] or [0.0, 0.0])
    return {"q": np.asarray(q), "v": np.asarray(v), "fingers": np.asarray(fingers)}


def _commands(ep: BagEpisode, cmd: Stream, grid: np.ndarray, dt_ns: int, eps: int,
              names: tuple[str, ...]) -> np.ndarray:
    """(K, 7) commanded targets for t_k + dt: the newest trajectory at t_k, interpolated at t_k + dt."""
    out = []
    for t, i in zip(grid, sample_index(cmd.times, grid, eps), strict=True):
        m = ep.decode(cmd, int(i))
        order = [list(m.joint_names).index(n) if n in m.joint_names else -1 for n in names]
        if -1 in order:
            raise ep.error(cmd.topic, f"joints {[n for n, o in zip(names, order, strict=True) if o < 0]} not in "
                                      f"the trajectory (it has {list(m.joint_names)})")
        ts = np.array([p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in m.points])
        pos = np.array([np.asarray(p.positions)[order] for p in m.points])
        when = (t + dt_ns - cmd.times[i]) / 1e9
        out.append([np.interp(when, ts, pos[:, j]) for j in range(len(names))])
    return np.asarray(out)


def _gripper(ep: BagEpisode, grip: Stream, cmd: Stream | None, grid: np.ndarray, eps: int) -> np.ndarray:
    """(K,) gripper command at each tick in the action space's -1 open .. +1 closed."""
    info = ep.info.get("info", {})
    lo, hi = float(info.get("gripper_open_value", -1.0)), float(info.get("gripper_closed_value", 1.0))
    values = np.array([float(ep.decode(grip, i).data[0]) for i in range(len(grip))])
    times = cmd.times if cmd is not None and len(cmd) == len(grip) else grip.times  # written in pairs per tick
    g = values[np.maximum(sample_index(times, grid, eps), 0)]
    return np.clip(-1.0 + 2.0 * (g - lo) / (hi - lo), -1.0, 1.0)


def _images(ep: BagEpisode, cam: Stream, idx: np.ndarray) -> np.ndarray:
    from roboalign.data.ros_images import image_msg_to_rgb

    out: np.ndarray | None = None
    for k, m in enumerate(ep.images(cam, idx)):
        rgb = image_msg_to_rgb(m, cam.msgtype, where=f"episode {ep.name}: topic {cam.topic}")
        if out is None:
            out = np.empty((len(idx), *rgb.shape), np.uint8)  # filled in place: one copy of the frames in memory
        if rgb.shape != out.shape[1:]:
            raise ep.error(cam.topic, f"image size changes during the episode: {out.shape[1:]} then {rgb.shape}")
        out[k] = rgb
    assert out is not None
    return out


def bag_to_episode(folder: str | Path, opts: BagOptions | None = None) -> Episode:
    """The training episode of a recorded episode folder; raises BagEpisodeError naming the episode and topic."""
    opts = opts or BagOptions()
    ep = read_bag_episode(folder)
    recorded_joints = ep.info.get("info", {}).get("joint_names")
    if recorded_joints and opts.joint_names == FR3_JOINT_NAMES:  # the bridge's joint names, saved with the bag
        opts = replace(opts, joint_names=tuple(recorded_joints))
    js = _one(ep, "joint_states", required=True)
    cmd = _one(ep, "command", required=opts.action_source == "commanded")
    grip = _one(ep, "gripper_command", required=False)
    cams = _cameras(ep, opts.cameras)
    data_streams = [js, *cams.values()]
    checked = [s for s in (*data_streams, cmd, grip) if s is not None]
    check_monotone(ep, checked)
    fps = _fps(ep, cmd, opts)
    grid = _grid(ep, cmd, data_streams, fps, regular=opts.fps is not None)
    check_clock(ep, checked, int(grid[0]), max(int(s.times[-1]) for s in checked), opts.max_gap_s)
    dt_ns = int(round(1e9 / fps))
    eps = dt_ns // 4 if opts.fps is not None or cmd is None else 1_000_000  # on the bridge's ticks: 1 ms
    first = max(int(np.argmax(sample_index(s.times, grid, eps) >= 0)) for s in data_streams)
    grid, dropped = _running(ep, grid[first:], eps)  # from the first tick with a message on every stream
    if len(grid) < 2 or any((sample_index(s.times, grid, eps) < 0).any() for s in data_streams):
        raise ep.error(None, f"fewer than 2 control ticks with data on every stream ({[s.topic for s in data_streams]})")
    m = _joint_states(ep, js, sample_index(js.times, grid, eps), opts.joint_names)
    width = m["fingers"].sum(axis=1)
    gripper = (_gripper(ep, grip, cmd, grid, eps) if grip is not None
               else np.where(width < 0.5 * width.max(), 1.0, -1.0))  # no command (kinesthetic): closed = narrow
    measured = np.c_[m["q"][1:], gripper[:-1]]
    robot = {"joint_vel": m["v"][:-1], "gripper_qpos": m["fingers"][:-1],
             "tick_time": (grid[:-1] - grid[0]) / 1e9}  # [s] from meta t0_ns: the ticks' real spacing
    if cmd is not None:
        robot["joint_position_command"] = np.c_[_commands(ep, cmd, grid[:-1], dt_ns, eps, opts.joint_names), gripper[:-1]]
    action = robot["joint_position_command"] if opts.action_source == "commanded" else measured
    get_action_space("joint_position").validate(action, where=f"episode {ep.name}: actions")
    images = {name: _images(ep, s, sample_index(s.times, grid[:-1], eps)) for name, s in cams.items()}
    return Episode(
        task=ep.info.get("task") or "free", instruction=ep.info.get("instruction", ""),
        success=ep.complete and (ep.info.get("outcome") == "success" or ep.info.get("operator_verdict") == "keep"), images=images,
        state=np.c_[m["q"][:-1], width[:-1]].astype(np.float32),
        actions={"joint_position": action.astype(np.float32)}, robot=robot,
        final_state=np.r_[m["q"][-1], width[-1]].astype(np.float32),
        meta=_meta(ep, grid, fps, cams, opts) | {"ticks_outside_running": dropped})


def _meta(ep: BagEpisode, grid: np.ndarray, fps: float, cams: dict[str, Stream], opts: BagOptions) -> dict[str, Any]:
    chunks = ep.by_role("chunk")
    policy = {}
    if chunks and len(chunks[0]):
        c = ep.decode(chunks[0], 0)
        policy = {"backend": c.backend, "action_space": c.action_space, "chunks": len(chunks[0])}
    return {
        "source": "rosbag2", "bag": str(ep.folder), "episode": ep.info.get("episode"),
        "outcome": ep.info.get("outcome", "unknown"), "message": ep.info.get("message", ""),
        "complete": ep.complete, "problems": ep.problems, "fps": fps, "dt": 1.0 / fps, "t0_ns": int(grid[0]),
        "state_names": list(opts.joint_names) + [STATE_NAMES[-1]], "action_source": opts.action_source,
        "cameras": {k: s.topic for k, s in cams.items()},
        "time_source": {s.topic: s.time_source for s in ep.streams.values()}, "policy": policy,
        "recorder_info": ep.info.get("info", {}),
    }
