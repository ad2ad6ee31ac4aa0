"""``roboalign say`` names the policy that will act: backend and checkpoint, and plainly when the checkpoint is
the tiny random-weight demo model (a VLA folder or its export), which will not succeed."""

from __future__ import annotations

import json

from roboalign.commands.say import policy_line, untrained
from roboalign.control.tiny_model import make_tiny_joint_checkpoint


def test_the_tiny_demo_model_is_named_untrained_and_a_trained_one_is_not(tmp_path) -> None:
    ckpt = make_tiny_joint_checkpoint(tmp_path / "checkpoint")
    export = tmp_path / "export"
    export.mkdir()
    (export / "manifest.json").write_text(json.dumps({"format": "roboalign.export/1", "checkpoint": str(ckpt)}))
    assert untrained(str(ckpt)) and untrained(str(export))
    assert policy_line("onnxruntime", str(export)) == \
        f"onnxruntime, checkpoint {export} (tiny untrained model: it will not succeed)"
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**config, "backbone_source": "runs/sft_libero/final"}))
    assert not untrained(str(ckpt)) and not untrained(str(export))
    assert policy_line("torch", str(ckpt)) == f"torch, checkpoint {ckpt}"
    assert not untrained(str(tmp_path / "elsewhere")) and not untrained("")  # not on this machine: no claim
    assert policy_line("onnxruntime", "") == "onnxruntime, checkpoint (none)"
    assert policy_line("expert", "").startswith("expert (the scripted sim expert")
