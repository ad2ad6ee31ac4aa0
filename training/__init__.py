"""Training entry points of RoboAlign (imported as ``roboalign.training``).

Alignment of the MLLM: ``sft`` (reasoning + FAST answers), ``grpo`` (format + prefix-accuracy reward),
their data builders, run configs (``configs/``: tiny CPU and paper-scale) with the ``--set`` overrides of
``roboalign train sft|grpo|vla`` (``overrides``), training curves and the run folder every stage writes
(``run_output``). The VLA head's training lives in ``vla_head``.
"""
