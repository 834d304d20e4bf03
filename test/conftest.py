"""Shared test set-up: keep every DDS packet of the suite on this machine, in its own domain."""
import os
import random

# Must be set before rclpy (and so Fast DDS) is first imported by any test module.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(100, 200)))
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
