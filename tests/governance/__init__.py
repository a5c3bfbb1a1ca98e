"""Tests for stratum.governance."""
