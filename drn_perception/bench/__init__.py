"""drn-bench: latency, memory and label agreement of the inference paths, written as tables.

Importing this package imports no inference library; bench.py loads each one when a path
that needs it is measured.
"""
