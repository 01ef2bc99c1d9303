"""Diagnostics of a judge and its labels: triage, self-consistency, suggested labels, corrected pass rate."""
