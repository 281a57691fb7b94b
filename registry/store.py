"""Content-addressed artifact store (placeholder: being written)."""
