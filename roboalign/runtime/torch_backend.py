"""PyTorch (eager) backend: the reference every exported backend is compared with.

Runs the checkpoint's own modules — the stock transformers Qwen-VL vision tower and truncated LLM
forward (which computes its own RoPE positions), then the flow-matching head — on the shared
pre-processing, timing the three stages separately (the same calls for Qwen2.5-VL and Qwen3-VL).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from roboalign.runtime.checkpoint_specs import RuntimeSpecs
from roboalign.runtime.manifest import load_manifest
from roboalign.runtime.preprocess import ImageProcessorSpec, ModelInputs, Preprocessor


def preprocessor_for_vla(vla: Any) -> Preprocessor:
    """The runtime pre-processor of a loaded VLA (its tokenizer, image processor and specs)."""
    proc = vla.processor
    return Preprocessor.from_specs(RuntimeSpecs.from_vla(vla), proc.tokenizer,
                                   ImageProcessorSpec.from_image_processor(proc.image_processor))


class TorchBackend:
    """A :class:`roboalign.models.vla.VLA` in eager PyTorch (CPU or CUDA)."""

    name = "torch"

    def __init__(self, vla: Any, device: str = "cpu", num_threads: int | None = None) -> None:
        if num_threads is not None:
            torch.set_num_threads(int(num_threads))
        self.device = torch.device(device)
        self.vla = vla.to(self.device).eval()
        self.specs = RuntimeSpecs.from_vla(vla)
        self.preprocessor = preprocessor_for_vla(vla)
        self.rtc_variant: str | None = None  # RTC variant for chunks with a prefix (None: the head config's)

    @classmethod
    def from_path(cls, path: str | Path, device: str = "cpu", num_threads: int | None = None,
                  **unused: Any) -> TorchBackend:
        """Load a checkpoint folder (an export folder is followed to the checkpoint it was made from)."""
        from roboalign.models.vla import load_vla

        path = Path(path)
        if unused:
            raise TypeError(f"torch backend: unexpected options {sorted(unused)}; valid: device, num_threads")
        if (path / "manifest.json").is_file() and not (path / "config.json").is_file():
            src = load_manifest(path).get("checkpoint", "")
            if not src or not Path(src).is_dir():
                raise FileNotFoundError(f"{path} is an ONNX export; the torch backend needs the checkpoint it was made "
                                        f"from ({src or 'not recorded'}), which is not available")
            path = Path(src)
        return cls(load_vla(path), device=device, num_threads=num_threads)

    def _t(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    @torch.inference_mode()
    def infer(self, x: ModelInputs, noise: np.ndarray,
              prefix: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, dict[str, float]]:
        """``prefix``: the committed prefix (``prefix_actions`` normalised, ``prefix_len``, ``soft_horizon``)
        for real-time chunking with the head's variant."""
        inner = self.vla.backbone.model.model  # Qwen2_5_VLModel / Qwen3VLModel (truncated at layer k)
        grid = self._t(x.image_grid_thw)
        t0 = time.perf_counter()
        pixels = x.pixel_values  # (N, P, C*T*p*p): the stock processor layout the HF vision tower takes
        vis = inner.get_image_features(self._t(pixels.reshape(-1, pixels.shape[-1])), grid, return_dict=True)
        t1 = time.perf_counter()
        out = inner(input_ids=self._t(x.input_ids), attention_mask=self._t(x.attention_mask), image_grid_thw=grid,
                    mm_token_type_ids=self._t(x.mm_token_type_ids), mm_encoder_outputs={"image": vis},
                    use_cache=False)  # Qwen3-VL: the DeepStack features travel inside ``vis``
        s = x.token_start
        hidden = out.last_hidden_state[:, s:]  # (B, S', D)
        t2 = time.perf_counter()
        rtc = {k: self._t(v) for k, v in (prefix or {}).items()}
        actions = self.vla.head(hidden, self._t(x.attention_mask[:, s:]), self._t(x.state), self._t(noise),
                                self._t(x.embodiment), **rtc, rtc=self.rtc_variant)  # (B, H, A)
        actions = actions.float().cpu().numpy()
        t3 = time.perf_counter()
        return actions, {"vision": (t1 - t0) * 1e3, "llm": (t2 - t1) * 1e3, "head": (t3 - t2) * 1e3}

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "device": str(self.device), "threads": torch.get_num_threads(),
                "torch": torch.__version__}
