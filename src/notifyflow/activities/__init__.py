"""Activities: small classes holding their dependencies, built once in worker.py."""
