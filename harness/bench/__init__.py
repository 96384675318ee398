"""Benchmarks: commands that print numbers side by side with peers. Never used as test assertions."""
