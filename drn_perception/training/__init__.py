"""Offline training and evaluation: drn-train (train.py), drn-eval (evaluate.py), metrics.py.

Importing this package loads nothing heavy; torch is imported when training starts.
"""
