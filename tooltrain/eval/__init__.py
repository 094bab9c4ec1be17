"""The evaluation stage: decoding, scoring, guided paths, the benchmark and its report, asking about your code."""
