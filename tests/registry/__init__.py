"""Tests for stratum.registry."""
