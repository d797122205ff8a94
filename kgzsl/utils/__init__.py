"""Shared utilities below every layer: crash-safe files (io), device choice, torch.distributed, shipped paths."""
