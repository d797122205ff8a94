"""The package version, in one place (read by the package, graph manifests and run summaries)."""

__version__ = "0.1.0"
