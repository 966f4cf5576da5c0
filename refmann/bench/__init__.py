"""Benchmarks that print ratios and tables measured side by side in one run (never asserted in tests)."""
