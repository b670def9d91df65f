"""Model backends behind the replica protocol: graphs on plain TensorFlow variables (the only
package besides ``training`` that imports TensorFlow, lazily) and a small NumPy MLP for tests."""
