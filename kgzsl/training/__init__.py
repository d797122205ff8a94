"""Training: run configs, fitting a propagation model to the seen rows, run folders, checkpoints."""
