"""Evaluation: closed-loop LIBERO success rates, offline action error, and the KNN phase probe.

``roboalign eval libero|offline|probe`` (:mod:`roboalign.evaluation.cli`) runs them; the harness scores any
``BasePolicy`` (scripted expert, torch VLA, onnxruntime backend) with the same code.
"""
