"""drn_perception: DRN semantic segmentation for ROS 2.

Importing the package needs only NumPy; torch, onnxruntime, tensorrt and rclpy are imported
by the modules that use them, when they are used.
"""

__version__ = "0.1.0"
