"""ROS 2 side of drn_perception: message <-> numpy conversions and the seg_node.

Importing this package imports nothing heavy; ``conversions`` needs NumPy (and OpenCV on first use),
``node`` needs rclpy and the ROS message packages.
"""
