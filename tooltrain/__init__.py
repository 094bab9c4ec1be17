"""Shared logic for the tool-discrimination training pipeline (data, models, training, benchmark)."""
