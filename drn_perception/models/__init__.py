"""DRN models (PyTorch). Importing this subpackage imports torch."""
