"""Node text features: text encoders (MiniLM, WordLlama, GloVe 6B, GloVe files) and the cached node feature matrix."""
