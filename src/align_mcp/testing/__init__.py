"""Test doubles shipped with the package: the fake OpenAI-compatible judge server and the simulated judge."""
