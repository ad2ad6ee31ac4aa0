"""Resuming a run from a Trainer checkpoint, with the Qwen-VL weight-key workaround.

transformers saves Qwen2.5-VL / Qwen3-VL weights with the legacy key names (``model.layers…``,
``visual…``) but ``Trainer._load_from_checkpoint`` loads them with a plain ``load_state_dict(strict=False)``
that skips the key conversion ``from_pretrained`` applies, so on resume *no weight is restored* and
training silently restarts from the initial weights (transformers#43701, still open in 5.23). We restore
the weights ourselves through ``from_pretrained`` before ``trainer.train(resume_from_checkpoint=…)``,
which then restores optimizer, scheduler, RNG and step as usual (its own weight load matches nothing and
warns about "missing keys"; that warning is expected). DeepSpeed / FSDP restore weights through their
own checkpoint formats and are left alone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def resolve_checkpoint(resume: str | bool | None, output_dir: str | Path) -> str | None:
    """``True`` -> the last ``checkpoint-N`` in ``output_dir``; a path -> itself (checked); falsy -> None."""
    if not resume:
        return None
    if resume is True:
        from transformers.trainer_utils import get_last_checkpoint

        out = Path(output_dir)
        last = get_last_checkpoint(str(out)) if out.is_dir() else None
        if last is None:
            raise FileNotFoundError(f"resume requested but {out} holds no checkpoint-N folder")
        return last
    path = Path(resume)
    if not path.is_dir():
        raise FileNotFoundError(f"resume checkpoint {path} does not exist")
    if not any(path.glob("*.safetensors")) and not (path / "pytorch_model.bin").exists():
        raise FileNotFoundError(f"resume checkpoint {path} has no model weights (*.safetensors)")
    return str(path)


def restore_weights(trainer: Any, checkpoint: str) -> None:
    """Load the checkpoint's weights into ``trainer.model`` with the key conversion (see module doc)."""
    if getattr(trainer, "is_deepspeed_enabled", False) or getattr(trainer, "is_fsdp_enabled", False):
        return
    model = trainer.model
    fresh = type(model).from_pretrained(checkpoint, local_files_only=True, use_safetensors=True, dtype=model.dtype)
    model.load_state_dict(fresh.state_dict(), strict=True)
    log.info("restored weights of %s via from_pretrained (transformers#43701 workaround)", checkpoint)
