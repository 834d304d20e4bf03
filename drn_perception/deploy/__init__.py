"""Offline deployment tools: ONNX export and TensorRT engine builds."""
