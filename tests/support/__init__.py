"""Test helpers shared by the driver test suites (fault proxy, …)."""
