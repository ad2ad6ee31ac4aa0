"""The policy's input-freshness rules and camera stream statistics (roboalign.control.freshness), without DDS."""

from __future__ import annotations

import numpy as np
import pytest

from roboalign.control.freshness import (
    Input,
    StreamStats,
    observation_stamp,
    privileged_lag,
    starved,
    wait_reason,
)


def test_wait_reason_names_the_first_missing_or_stale_input() -> None:
    cams = [Input("/cam/a", 9.9, 0.5), Input("/cam/b", None, 0.5)]
    assert wait_reason(10.0, cams) == "waiting for /cam/b"
    stale = [Input("/cam/a", 9.2, 0.5), Input("/joint_states", 9.99, 0.5)]
    assert wait_reason(10.0, stale) == "/cam/a is 0.800 s old (limit 0.5 s)"
    fresh = [Input("/cam/a", 9.6, 0.5), Input("/joint_states", 9.999, 0.01)]
    assert wait_reason(10.0, fresh) is None
    assert wait_reason(10.0, [Input("/joint_states", 9.98, 0.01)]) == "/joint_states is 0.020 s old (limit 0.01 s)"
    assert wait_reason(1.0, [Input("image on /c", None, 0.5, "waiting for images on /c")]) == "waiting for images on /c"


def test_an_input_exactly_at_its_limit_is_still_fresh() -> None:
    assert wait_reason(1.5, [Input("x", 1.0, 0.5)]) is None
    assert wait_reason(1.5000001, [Input("x", 1.0, 0.5)]) is not None


def test_privileged_state_must_not_lag_the_image() -> None:
    assert privileged_lag(2.0, None, "/sim/privileged") == "waiting for privileged state of t=2.000 on /sim/privileged"
    assert privileged_lag(2.0, 1.95, "/sim/privileged") is not None
    assert privileged_lag(2.0, 2.0, "p") is None and privileged_lag(2.0, 2.1, "p") is None
    assert observation_stamp(2.0, None) == 2.0 and observation_stamp(2.0, 2.1) == 2.1
    assert observation_stamp(2.0, 1.0) == 2.0


def _feed(stats: StreamStats, stamps: np.ndarray, delay: float = 0.004) -> None:
    for s in stamps:
        stats.add(float(s), float(s) + delay)


def test_stream_stats_rate_age_latency_of_a_steady_stream() -> None:
    s = StreamStats()
    _feed(s, np.arange(300) / 30.0)  # 10 s at 30 Hz
    now = 299 / 30 + 0.004
    out = s.summary(now + 0.1)
    assert out["rate_hz"] == pytest.approx(30.0, rel=1e-6)
    assert out["age_ms"] == pytest.approx(100.0, abs=1e-6)
    assert out["latency_ms"] == pytest.approx(4.0, abs=1e-6)
    assert out["drops"] == 0 and out["frames"] == 300


def test_stream_stats_counts_missing_frames_from_stamp_gaps() -> None:
    stamps = np.arange(300) / 30.0
    lost = {50, 51, 52, 120, 200, 201}  # 6 frames never arrive
    s = StreamStats()
    _feed(s, np.array([t for k, t in enumerate(stamps) if k not in lost]))
    assert s.drops == 6 and s.frames == 294
    assert s.period_s() == pytest.approx(1 / 30)
    # every other frame lost from the start: the estimate alone cannot know; the nominal rate can
    s_est, s_nom = StreamStats(), StreamStats(expected_hz=30.0)
    _feed(s_est, stamps[::2])
    _feed(s_nom, stamps[::2])
    assert s_est.drops == 0 and s_nom.drops == 149
    assert s_nom.rate_hz(stamps[-2] + 0.004) == pytest.approx(15.0, rel=1e-6)


def test_stream_stats_restart_and_window() -> None:
    s = StreamStats(window_s=1.0)
    _feed(s, np.arange(60) / 30.0)
    _feed(s, np.arange(10) / 30.0)  # the publisher restarted with older stamps: no drops invented
    assert s.drops == 0 and s.frames == 70
    assert s.rate_hz(100.0) == 0.0 and s.age_s(100.0) > 90  # nothing in the last second
    assert StreamStats().age_s(0.0) is None and StreamStats().summary(0.0)["age_ms"] == -1.0


def test_starved_lists_streams_below_the_rate() -> None:
    fast, slow = StreamStats(), StreamStats()
    _feed(fast, np.arange(90) / 30.0)
    _feed(slow, np.arange(0, 90, 3) / 30.0)
    now = 89 / 30 + 0.01
    assert starved({"agentview": fast, "wrist": slow}, now, 27.0) == ["wrist"]


def test_a_slow_full_size_stream_is_named_with_what_was_measured_and_the_cause() -> None:
    from roboalign.control.stream_health import SHM_SEGMENT_BYTES, StreamHealth, stream_cause

    stamps = np.arange(150) / 30.0  # 5 s at 30 Hz; two in three frames of 921,600 B lost, then a 0.6 s hole
    kept = [t for k, t in enumerate(stamps) if k % 3 == 0 and not 60 <= k < 78]
    s = StreamStats(expected_hz=30.0)  # the camera's nominal rate (policy_node camera_fps)
    for t in kept:
        s.add(float(t), float(t) + 0.002, 921_600)
    h = s.health(kept[-1] + 0.01, "/camera/wrist/color/image_raw")
    assert h.published_hz == pytest.approx(30.0) and h.rate_hz == pytest.approx(43 / 4.9)  # 44 frames in 4.9 s
    assert h.frame_bytes == 921_600 and h.max_gap_s == pytest.approx(0.7, abs=1e-6)
    text = stream_cause(h)
    assert text is not None and text.startswith(f"/camera/wrist/color/image_raw: {h.rate_hz:.1f} Hz received of "
                                                f"{h.published_hz:.1f} Hz published, largest gap 0.700 s, frames "
                                                "900 KiB: frames larger than FastDDS's default 512 KiB shared-memory")
    for fix in ("config/fastdds.xml", "FASTRTPS_DEFAULT_PROFILES_FILE", "net.core.rmem_max", "match QoS"):
        assert fix in text, fix
    # the same loss with small frames: not the segment, the buffers / QoS / CPU
    small = stream_cause(StreamHealth("/c", 10.0, 30.0, 0.2, SHM_SEGMENT_BYTES // 2, 50))
    assert small is not None and "shared-memory" not in small and "net.core.rmem_max" in small
    # every frame at the publisher's rate: nothing to explain; a short window or an unknown rate neither
    steady = StreamStats()
    for t in stamps:
        steady.add(float(t), float(t) + 0.002, 921_600)
    assert stream_cause(steady.health(stamps[-1] + 0.01, "/c")) is None
    assert stream_cause(StreamHealth("/c", 1.0, 0.0, 5.0, 921_600, 10)) is None


def test_a_long_gap_alone_makes_a_stream_slow_and_the_watchdog_names_the_cause() -> None:
    from roboalign.control.stream_health import StreamHealth, stream_cause
    from roboalign.control.watchdog import Watchdog

    gap = StreamHealth("/c", 29.0, 30.0, 0.5, 921_600, 145)  # the rate is fine, one 0.5 s hole is not
    assert gap.slow() and "largest gap 0.500 s" in stream_cause(gap)
    assert not StreamHealth("/c", 29.0, 30.0, 0.09, 921_600, 145).slow()
    wd = Watchdog({"image": 0.2, "state": 0.1})
    wd.explain("image", lambda: stream_cause(gap))
    wd.arm("image", 0.0)
    wd.arm("state", 0.0)
    wd.feed("image", 1.0)
    wd.feed("state", 1.2)
    (problem,) = wd.check(1.25)
    assert problem.startswith("stale image: last message 0.250 s ago (timeout 0.2 s); /c: 29.0 Hz received of "
                              "30.0 Hz published, largest gap 0.500 s, frames 900 KiB: frames larger than")
    wd.explain("image", lambda: None)  # nothing measured to blame: the symptom alone
    assert wd.check(1.25) == ["stale image: last message 0.250 s ago (timeout 0.2 s)"]
