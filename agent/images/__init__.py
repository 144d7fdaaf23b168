"""Image-folder capability: scanner (no network), its local index and safe file access."""
