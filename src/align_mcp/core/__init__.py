"""Pure building blocks with no I/O: the shared types, statistics, prompt templates and text helpers."""
