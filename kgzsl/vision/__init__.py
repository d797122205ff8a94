"""The image side: frozen backbones, preprocessing, robust image loading, cached feature extraction."""
