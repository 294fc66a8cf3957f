"""charlm: character-level language models trained, compared and shipped by a DVC pipeline."""

__version__ = "0.1.0"
