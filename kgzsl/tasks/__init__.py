"""Tasks built on the classifier: evaluate, explain, search, abstain, fine-tune, demo, benchmarks."""
