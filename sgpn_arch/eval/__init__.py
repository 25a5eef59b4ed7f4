"""Evaluation: metrics, benchmark peers, the blind degradation (benchmark pairs, training data), the benchmark."""
