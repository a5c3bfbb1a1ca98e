"""Tests for stratum.storage."""
