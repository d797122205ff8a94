"""Benchmarks run by ``kgzsl benchmark NAME``; each prints a table and can write flat JSON rows."""
