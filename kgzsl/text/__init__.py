"""Node text features: text encoders (MiniLM, WordLlama, GloVe) and the cached node feature matrix."""
