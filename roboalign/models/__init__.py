"""Models: the MLLM backbone, the flow-matching action head and the VLA that joins them."""
