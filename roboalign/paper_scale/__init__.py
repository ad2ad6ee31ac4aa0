"""Paper-scale readiness without a GPU: the published 7B/8B architectures, meta-device model builds and
shape checks (``roboalign check-config``), memory estimates, and the one-GPU timing script's Python part."""
