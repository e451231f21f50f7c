"""Orchestration of training: data pipeline, model assembly, the training loop, prior estimation."""
