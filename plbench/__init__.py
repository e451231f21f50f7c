"""plbench: benchmark suite for multi-label classification with partial annotations."""

__version__ = "0.1.0"
