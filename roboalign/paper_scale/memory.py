"""Per-GPU memory estimates of a training run (a first-order model, stated so it can be checked).

Model states, in bytes per parameter, split over ``setup.shards`` GPUs:

* DeepSpeed ZeRO-3 with bf16/fp16: the weights in the model dtype (frozen ones too), their gradients
  (trainable only) and the fp32 optimizer state DeepSpeed keeps (master copy 4 + Adam m, v 8 = 12 B);
  plus the gathered weights of the largest layer (x2: prefetch) in the model dtype.
* FSDP2: weights, gradients and AdamW's two moments all in the parameters' dtype, sharded; plus the
  gathered largest layer (x2).
* DDP / one process: the same as FSDP without sharding.
Offloading the optimizer (``offload_optimizer_device: cpu``) removes its term from the GPU.

Activations (bf16) with gradient checkpointing: each decoder layer keeps its input (b·S·D) and one layer is
recomputed at a time (≈ b·S·(16·D + 3·I)); without checkpointing every layer keeps the latter. The logits
of the loss pass are counted on their own: b·S·V in bf16 plus an fp32 copy and its gradient (10 B per
entry), which at a 150 K vocabulary is often the largest single term. Not included: the CUDA context
(~0.5-1 GB), NCCL buffers and allocator fragmentation; treat the total as ±30 %.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from roboalign.paper_scale.accelerate_setup import DistSetup

GB = 1024**3
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about the trained model."""

    total_params: int
    trainable_params: int
    largest_layer_params: int
    hidden: int
    intermediate: int
    layers: int
    vocab: int


@dataclass(frozen=True)
class MemoryEstimate:
    """GiB per GPU, by term."""

    weights: float
    gradients: float
    optimizer: float
    gathered: float
    activations: float
    logits: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.gathered + self.activations + self.logits

    def to_dict(self) -> dict[str, float]:
        return {**{k: round(v, 2) for k, v in asdict(self).items()}, "total": round(self.total, 2)}

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in asdict(self).items())
        return f"{self.total:.1f} GiB per GPU ({parts})"


def model_state_bytes(m: ModelShape, setup: DistSetup, dtype_bytes: int) -> tuple[float, float, float, float]:
    """(weights, gradients, optimizer, gathered layer) bytes per GPU."""
    n = setup.shards
    weights = m.total_params * dtype_bytes / n
    grads = m.trainable_params * dtype_bytes / n
    if setup.strategy == "deepspeed" and setup.mixed_precision in ("bf16", "fp16"):
        optim = m.trainable_params * 12 / n  # fp32 master + Adam m, v
    else:
        optim = m.trainable_params * 2 * dtype_bytes / n  # AdamW moments in the parameter dtype
    if setup.offload_optimizer:
        optim = 0.0
    gathered = 2 * m.largest_layer_params * dtype_bytes if n > 1 else 0.0
    return weights, grads, optim, gathered


def activation_bytes(m: ModelShape, batch: int, seq: int, checkpointing: bool) -> float:
    """Saved activations of the decoder stack in bf16 (see module docstring)."""
    per_layer_full = batch * seq * (16 * m.hidden + 3 * m.intermediate) * 2
    if checkpointing:
        return m.layers * batch * seq * m.hidden * 2 + per_layer_full
    return m.layers * per_layer_full


def logits_bytes(vocab: int, batch: int, seq: int) -> float:
    """bf16 logits + their fp32 copy for the loss + its gradient."""
    return batch * seq * vocab * (2 + 4 + 4)


def estimate(m: ModelShape, setup: DistSetup, dtype: str, batch: int, seq: int, loss_tokens: int,
             checkpointing: bool) -> MemoryEstimate:
    """Per-GPU estimate for micro-batch ``batch`` of ``seq`` tokens, logits over ``loss_tokens`` per sample."""
    w, g, o, gathered = model_state_bytes(m, setup, DTYPE_BYTES[dtype])
    return MemoryEstimate(weights=w / GB, gradients=g / GB, optimizer=o / GB, gathered=gathered / GB,
                          activations=activation_bytes(m, batch, seq, checkpointing) / GB,
                          logits=logits_bytes(m.vocab, batch, loss_tokens) / GB)
