"""Data sources for training and evaluation.

Kept import-light on purpose: importing this package pulls in nothing heavy (no torch).
Import the modules you need directly, e.g. ``from drn_perception.data.synthetic import
generate_scene``.
"""
