"""One CPU-fallback rule for every onnxruntime path: a requested execution provider that cannot run refuses to
load, naming the providers asked for, those available and ``allow_cpu_fallback``, unless the fallback is allowed."""

from __future__ import annotations

import inspect
import logging

import onnxruntime as ort
import pytest

from roboalign.doctor.report import DeployConfig
from roboalign.runtime.ort_backend import (
    OnnxRuntimeBackend,
    ProviderUnavailable,
    make_session,
    refuse_or_fall_back,
    resolve_providers,
)
from roboalign.spec.policy_io import ALLOW_CPU_FALLBACK

ASKED = ["CUDAExecutionProvider", "CPUExecutionProvider"]
MISSING = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p not in ort.get_available_providers()]


def test_the_default_refuses_and_names_what_was_asked_and_what_is_here():
    assert ALLOW_CPU_FALLBACK is False
    with pytest.raises(ProviderUnavailable) as err:
        refuse_or_fall_back("robot.yaml", ASKED[:1], "not in this build", ASKED, ["CPUExecutionProvider"],
                            ALLOW_CPU_FALLBACK)
    msg = str(err.value)
    assert msg.startswith("robot.yaml: execution provider(s) CUDAExecutionProvider not in this build")
    assert "asked for: CUDAExecutionProvider, CPUExecutionProvider; available: CPUExecutionProvider" in msg
    assert "allow_cpu_fallback=False" in msg and "set allow_cpu_fallback=True" in msg  # the setting and the fix


def test_allowed_fallback_warns_and_runs_on_the_cpu(caplog):
    with caplog.at_level(logging.WARNING):
        refuse_or_fall_back("robot.yaml", ASKED[:1], "not in this build", ASKED, ["CPUExecutionProvider"], True)
    assert "CUDAExecutionProvider not in this build" in caplog.text and "falling back" in caplog.text
    if MISSING:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert resolve_providers([*MISSING, "cpu"], allow_cpu_fallback=True) == ["CPUExecutionProvider"]
        assert "allow_cpu_fallback=True" in caplog.text


@pytest.mark.skipif(not MISSING, reason="this onnxruntime has the CUDA and TensorRT providers")
def test_a_config_asking_for_a_missing_provider_is_refused_by_default():
    with pytest.raises(ProviderUnavailable, match=f"{MISSING[0]}.*asked for: {MISSING[0]}, CPUExecutionProvider; "
                                                  "available: .*allow_cpu_fallback=False"):
        resolve_providers([MISSING[0], "cpu"])
    assert resolve_providers(["cpu"]) == ["CPUExecutionProvider"]  # asking for the CPU is no fallback


def test_every_path_defaults_to_the_one_setting():
    for fn in (resolve_providers, make_session, OnnxRuntimeBackend.__init__):
        assert inspect.signature(fn).parameters["allow_cpu_fallback"].default is ALLOW_CPU_FALLBACK, fn.__qualname__
    assert DeployConfig().allow_cpu_fallback is ALLOW_CPU_FALLBACK
