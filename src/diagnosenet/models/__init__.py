"""Model graphs on plain TensorFlow variables (the only package besides ``training`` that imports TensorFlow)."""
