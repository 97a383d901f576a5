"""promptlab: find the best prompt for an LLM on a labeled dataset, by hand and automatically."""

__version__ = "0.1.0"
