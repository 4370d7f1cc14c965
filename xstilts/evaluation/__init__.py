"""Metrics (XTREME semantics), zero-shot prediction, retrieval, sandboxed code execution."""
