"""The optimizer: failure modes, candidate prompts within a call budget, DSPy GEPA, and stored proposals."""
