"""Verdicts on measurements: run-level comparison of two result sets, change points over a history."""
