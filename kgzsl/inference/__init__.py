"""Inference: label resolution, the linear head, the zero-shot classifier, concepts added without retraining."""
