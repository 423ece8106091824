"""axon: a test-and-measure suite for ML inference served by NVIDIA Triton."""

__version__ = "0.1.0"
