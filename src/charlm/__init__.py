"""charlm: character-level language models trained, compared and shipped by a DVC pipeline (its
version is the installed distribution's: `charlm --version`)."""
