"""Evaluation: suites, metrics, runs stored per model version, paired comparison and release gates."""
