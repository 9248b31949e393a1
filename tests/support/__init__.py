"""Test support: fakes, oracles, fixtures' machinery and shared workloads (no tests here)."""
