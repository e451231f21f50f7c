"""Artifact files (simulations, priors, runs, reports): formats and crash-safe writes."""
