"""The operator console without a robot: the real console process (aiohttp + its own rclpy node) over real DDS,
driven with plain HTTP. Token and origin checks on the page, the actions and the streams; the console line; every
action logged; completion as the bridge resolves; the live policy in words; camera JPEGs with the bandwidth
measured. The trials panel's bookkeeping (resume, grid, Wilson intervals) runs on files alone."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from roboalign.commands.trials import Trial, append_trial
from roboalign.spec.tasks import TaskError, sim_task_set

pytestmark = pytest.mark.ros
rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (make setup)")  # the console package declares ROS params
pytest.importorskip("aiohttp", reason="the console's server (make setup installs it)")

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "console-test-token-0123456789"
LINE = re.compile(r"^console: http://(127\.0\.0\.1):(\d+)/\?token=(\S+)$")


# ---------------------------------------------------------------- files only
def test_wilson_intervals_match_the_known_values() -> None:
    from roboalign_policy.console.trials_panel import wilson

    lo, hi = wilson(12, 24)
    assert (round(lo, 3), round(hi, 3)) == (0.314, 0.686)  # 0.5 ± 1.96·√(pq/n + z²/4n²) / (1 + z²/n)
    lo, hi = wilson(24, 24)
    assert hi == pytest.approx(1.0) and round(lo, 3) == 0.862
    assert wilson(0, 0) == (0.0, 1.0)


def test_the_trials_panel_resumes_from_trials_csv_and_fills_grid_and_results(tmp_path: Path) -> None:
    from roboalign_policy.console.trials_panel import TrialsPanel

    def trial(k: int, ok: bool) -> Trial:
        return Trial("expert", "sim", "can_to_bowl", "tomato sauce", k, ok, "success" if ok else "failure", 90, 4.5,
                     k + 1, "put the tomato sauce in the bowl", "", init_state=10 + k)

    for k, ok in [(0, True), (1, False), (2, True)]:
        append_trial(tmp_path, trial(k, ok))
    panel = TrialsPanel(None, tmp_path, "expert", "sim", ["can_to_bowl"], trials_per_object=5, first_init_state=10)
    st = panel.state()
    assert st["next"] == {"task": "can_to_bowl", "object": "tomato sauce", "trial": 3, "init_state": 13}
    assert st["last"] == {"task": "can_to_bowl", "object": "tomato sauce", "trial": 2}  # what a note is about
    assert st["grid"] == [{"task": "can_to_bowl", "object": "tomato sauce", "cells": [True, False, True, None, None]}]
    rows = {r["object"]: r for r in st["results"]}
    assert (rows["all"]["successes"], rows["all"]["trials"]) == (2, 3)
    assert 0.2 < rows["all"]["ci_low"] < 0.667 < rows["all"]["ci_high"] < 1.0
    panel.note("can_to_bowl", "tomato sauce", 1, "the can slipped")
    assert panel.state()["notes"][-1]["note"] == "the can slipped"
    with pytest.raises(ValueError, match="init state"):  # another --first-init-state than the recorded trials
        TrialsPanel(None, tmp_path, "expert", "sim", ["can_to_bowl"], trials_per_object=5, first_init_state=0)
    with pytest.raises(ValueError, match="no trial is waiting"):
        panel.mark("y")


def _checkpoint(folder: Path, source: str) -> Path:
    ckpt, export = folder / "checkpoint", folder / "export"
    ckpt.mkdir(parents=True)
    export.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"backbone_source": source, "backbone_family": "qwen2_5_vl"}))
    (export / "manifest.json").write_text(json.dumps({"checkpoint": str(ckpt)}))
    return export


def test_the_live_policy_is_said_in_words(tmp_path: Path) -> None:
    from roboalign.control.policy_words import UNTRAINED, describe_policy

    tiny = _checkpoint(tmp_path / "tiny", "tiny (random init)")
    trained = _checkpoint(tmp_path / "trained", "Qwen/Qwen2.5-VL-3B-Instruct")
    assert describe_policy("onnxruntime", str(tiny)).startswith(UNTRAINED)
    assert describe_policy("torch", str(tiny.parent / "checkpoint")).startswith(UNTRAINED)
    assert describe_policy("onnxruntime", str(trained)).startswith("trained model export")
    assert "training unknown" in describe_policy("onnxruntime", str(tmp_path / "nowhere"))
    assert "expert" in describe_policy("expert", "")


def test_the_pages_json_is_strict_a_non_finite_number_goes_as_null() -> None:
    from roboalign_policy.console.server import _dumps

    got = json.loads(_dumps({"latency_ms": float("nan"), "rows": [[1.5, float("inf")]], "ok": True}))
    assert got == {"latency_ms": None, "rows": [[1.5, None]], "ok": True}


# ---------------------------------------------------------------- the console process


def start_console(tmp: Path, *params: str) -> tuple[subprocess.Popen, str, Path]:
    """The console process and its base URL, from the line it prints; its stderr goes to a file."""
    tmp.mkdir(parents=True, exist_ok=True)
    err = tmp / "console.err"
    cmd = [sys.executable, "-m", "roboalign_policy.console", "--ros-args", "-p", "port:=0", "-p", f"token:={TOKEN}",
           "-p", f"trials_dir:={tmp / 'trials'}", "-p", f"record_dir:={tmp / 'record'}", *params]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err.open("w"), text=True)
    line = proc.stdout.readline().strip()  # the console line is its first output
    m = LINE.match(line)
    assert m, f"no console line (got {line!r}); stderr: {err.read_text()[-2000:]}"
    assert m.group(3) == TOKEN
    return proc, f"http://127.0.0.1:{m.group(2)}", err


def stop_console(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    proc, base, err = start_console(tmp_path_factory.mktemp("console"))
    yield base, err
    assert stop_console(proc) == 0, err.read_text()[-2000:]


def http(url: str, data: dict | None = None, headers: dict | None = None, read: int = -1) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, data=None if data is None else json.dumps(data).encode(),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(read) if read > 0 else r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_the_token_guards_the_page_the_actions_and_the_streams(console) -> None:
    base, _ = console
    targets = [("/", None), ("/api/state", None), ("/api/events", None), ("/api/camera/agentview.jpg", None),
               ("/static/console.js", None), ("/api/estop", {"engage": True}), ("/api/command", {"command": "stop"})]
    for path, body in targets:
        assert http(base + path, body)[0] == 401, path
        assert http(f"{base}{path}?token=wrong-{TOKEN}", body)[0] == 403, path
        assert http(base + path, body, {"X-Console-Token": "x" * 30})[0] == 403, path
    code, page, headers = http(f"{base}/?token={TOKEN}")
    assert code == 200 and b"E-STOP" in page
    assert f"={TOKEN}" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
    code, first, headers = http(f"{base}/api/events?token={TOKEN}", read=16)
    assert code == 200 and headers["Content-Type"].startswith("text/event-stream") and first.startswith(b"data: {")
    cookie = headers_cookie = f"roboalign_console_{base.rsplit(':', 1)[1]}={TOKEN}"
    assert http(base + "/api/state", headers={"Cookie": headers_cookie})[0] == 200
    assert http(base + "/api/state", headers={"Cookie": cookie.replace(TOKEN, "nope" * 5)})[0] == 403


def test_cross_origin_requests_are_refused_even_with_the_token(console) -> None:
    base, _ = console
    own = {"X-Console-Token": TOKEN}
    code, body, _ = http(base + "/api/command", {"command": "stop"}, {**own, "Origin": "http://evil.example"})
    assert code == 403 and b"cross-origin" in body
    assert http(base + "/api/state", headers={**own, "Sec-Fetch-Site": "cross-site"})[0] == 403
    assert http(base + "/api/state", headers={**own, "Origin": base})[0] == 200
    assert "Access-Control-Allow-Origin" not in http(base + "/api/state", headers=own)[2]


def test_every_action_is_logged_with_its_outcome(console) -> None:
    base, err = console
    own = {"X-Console-Token": TOKEN}
    code, body, _ = http(base + "/api/command", {"command": "jump"}, own)
    assert code == 200 and json.loads(body)["result"]["ok"] is False  # refused by the console: not a command
    code, body, _ = http(base + "/api/teleport", {}, own)
    assert code == 400 and b"unknown action" in body
    assert http(base + "/api/trials_mark", {"verdict": "y"}, own)[0] == 400  # no trial waits for a mark
    assert http(base + "/api/command", None, own)[0] in (400, 405)
    actions = json.loads(http(base + "/api/state", headers=own)[1])["actions"]
    assert [(a["action"], a["ok"]) for a in actions[-3:]] == [("jump", False), ("teleport", False),
                                                              ("trials_mark", False)]
    assert "no trial is waiting for a verdict" in actions[-1]["detail"]
    log = err.read_text()
    assert "action jump: refused" in log and "action trials_mark: refused" in log


def test_the_estop_without_a_bridge_says_so(console) -> None:
    base, _ = console
    code, body, _ = http(base + "/api/estop", {"engage": True}, {"X-Console-Token": TOKEN})
    assert code == 503 and b"no e-stop service /roboalign/set_estop" in body


def test_the_estop_socket_needs_the_token_and_answers_each_message(console) -> None:
    """The page's e-stop line (a WebSocket): refused without the token or from another origin; with it, "engage"
    goes out on the e-stop topic and the reply says the bridge's service did not confirm (no bridge here)."""
    import asyncio

    import aiohttp

    base, _ = console
    url = base + "/api/estop_ws"

    async def talk() -> list:
        async with aiohttp.ClientSession() as session:
            codes = []
            for query, headers in [("", {}), ("?token=wrong" + TOKEN, {}), ("?token=" + TOKEN,
                                                                           {"Origin": "http://evil.example"})]:
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await session.ws_connect(url + query, headers=headers)
                codes.append(refused.value.status)
            async with session.ws_connect(f"{url}?token={TOKEN}") as ws:
                await ws.send_str("engage")
                engaged = await ws.receive_json(timeout=30)
                await ws.send_str("jump")
                return [codes, engaged, await ws.receive_json(timeout=10)]

    codes, engaged, bad = asyncio.run(talk())
    assert codes == [401, 403, 403]
    assert engaged == {"ok": False, "error": "no e-stop service /roboalign/set_estop"}
    assert bad == {"ok": False, "error": "send 'engage' or 'release'"}


def test_completion_offers_the_task_set_and_the_bridges_refusal(console) -> None:
    base, _ = console
    own = {"X-Console-Token": TOKEN}
    got = json.loads(http(base + "/api/complete?q=ketchup", headers=own)[1])
    assert {"task": "bottle_to_basket", "instruction": "put the ketchup in the basket"} in got["suggestions"]
    assert all("ketchup" in s["instruction"] for s in got["suggestions"])
    assert got["match"]["task"] == "bottle_to_basket"
    text = "put the thing over there"
    got = json.loads(http(base + "/api/complete?q=" + urllib.request.quote(text), headers=own)[1])
    with pytest.raises(TaskError) as refusal:
        sim_task_set("targets").match(text, domain="any")  # what the bridge answers (default scenes and domain)
    assert got["refusal"] == str(refusal.value) and "match" not in got


def _publisher_node(name: str):
    from rclpy.context import Context

    from roboalign_policy.node_runner import use_dds_profile

    use_dds_profile()
    ctx = Context()
    rclpy.init(context=ctx)
    return ctx, rclpy.create_node(name, context=ctx)


def _close(ctx, node) -> None:
    node.destroy_node()
    rclpy.try_shutdown(context=ctx)


def test_the_page_shows_the_live_policy_in_words_and_the_cameras_as_jpeg(console, tmp_path: Path) -> None:
    """A tiny untrained export on the policy status reads as such; a camera's frames come back as JPEG with the
    colours kept, and the bytes received are measured."""
    from roboalign_msgs.msg import PolicyStatus
    from sensor_msgs.msg import Image

    from roboalign_policy import conversions as conv
    from roboalign_policy import qos

    base, _ = console
    own = {"X-Console-Token": TOKEN}
    export = _checkpoint(tmp_path, "tiny (random init)")
    ctx, node = _publisher_node("console_test_publisher")
    try:
        status = node.create_publisher(PolicyStatus, qos.POLICY_STATUS, qos.RELIABLE)
        cam = node.create_publisher(Image, qos.CAMERA_TOPICS[0], qos.camera_profile(qos.reliability_of("reliable")))
        rgb = np.zeros((48, 64, 3), np.uint8)
        rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 60, 20  # a red-orange frame: a BGR mix-up turns it blue
        state, deadline = {}, time.monotonic() + 30
        while time.monotonic() < deadline:
            status.publish(PolicyStatus(state=PolicyStatus.STATE_READY, backend="onnxruntime", checkpoint=str(export)))
            cam.publish(conv.rgb_to_image(rgb))
            time.sleep(0.1)
            state = json.loads(http(base + "/api/state", headers=own)[1])
            if state["policy"].get("checkpoint") == str(export) and state["cameras"][0]["frames"] >= 10:
                break
        assert state["policy"]["live"].startswith("tiny untrained model: it will not succeed"), state["policy"]
        code, jpeg, headers = http(base + "/api/camera/agentview.jpg", headers=own)
        assert code == 200 and headers["Content-Type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
        import cv2

        back = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
        assert back.shape == rgb.shape and np.abs(back.astype(int) - rgb).mean() < 8
        cam_state = state["cameras"][0]
        frame_bytes = len(conv.rgb_to_image(rgb).data)
        assert cam_state["rate_hz"] > 0 and cam_state["received_bytes_per_s"] >= frame_bytes * cam_state["rate_hz"]
        assert http(base + "/api/camera/nope.jpg", headers=own)[0] == 404
    finally:
        _close(ctx, node)


def test_the_console_listens_on_loopback_only(console) -> None:
    import socket

    base, _ = console
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.2", port), timeout=5):
        pass  # another loopback address: a console bound to 0.0.0.0 would answer here


def test_roboalign_console_serves_the_trials_it_is_given_and_refuses_an_unknown_task(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "roboalign.commands.cli", "console", "--port", "0", "--token", TOKEN, "--task",
           "can_to_bowl", "--label", "it's sft", "--first-init-state", "20", "--trials-dir", str(tmp_path / "t")]
    bad = subprocess.run([*cmd, "--task", "can_to_cup"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown task 'can_to_cup'; valid tasks: bottle_to_basket" in bad.stderr
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        m = LINE.match(proc.stdout.readline().strip())
        assert m, "no console line"
        trials = json.loads(http(f"http://127.0.0.1:{m.group(2)}/api/state?token={TOKEN}")[1])["trials"]
        assert trials["label"] == "it's sft" and [g["task"] for g in trials["grid"]] == ["can_to_bowl"]
        assert trials["next"] == {"task": "can_to_bowl", "object": "tomato sauce", "trial": 0, "init_state": 20}
    finally:
        assert stop_console(proc) == 0


@pytest.mark.parametrize(("graph_name", "mode"), [("sim", "sim"), ("real_robot", "real")])
def test_the_graphs_start_the_console_with_console_true(tmp_path: Path, graph_name: str, mode: str) -> None:
    """``console:=true`` (``roboalign demo``'s default) adds the console node, started as the launch files start it,
    with the graph's parameters file (the robot's console asks the operator to mark trials)."""
    from roboalign_policy.graph import load_graph, node_command

    graph = load_graph(graph_name, ROOT / "ros2_ws/src/roboalign_policy/config")  # the source's (as the tests')
    assert "console" not in [n.name for n in graph.active_nodes(graph.resolve({}))]  # off unless asked for
    args = graph.resolve({"console": "true", "console_port": "0"})
    (node,) = [n for n in graph.active_nodes(args) if n.name == "console"]
    proc = subprocess.Popen(node_command(graph, node, args), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        m = LINE.match(proc.stdout.readline().strip())
        assert m, "no console line"
        base = f"http://127.0.0.1:{m.group(2)}"
        state = json.loads(http(f"{base}/api/state?token={m.group(3)}")[1])
        assert state["config"]["mode"] == mode and state["trials"]["mode"] == mode
        assert http(f"{base}/api/state?token={TOKEN}")[0] == 403  # a random token of its own
    finally:
        assert stop_console(proc) == 0
