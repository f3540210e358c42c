"""Benchmarks of the daemon, each figure printed beside a raw baseline measured in the same run."""
