"""Training entry points of RoboAlign (imported as ``roboalign.training``).

Alignment of the MLLM: ``sft`` (reasoning + FAST answers), ``grpo`` (format + prefix-accuracy reward),
their data builders, run configs (``configs/``: tiny CPU and paper-scale), training curves and the
``roboalign train sft|grpo|vla`` command (``cli``). The VLA head's training lives in ``vla``.
"""
