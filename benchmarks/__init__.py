"""Speed and memory benchmarks, each run from the repository root as `python -m benchmarks.NAME`."""
