"""vision_msgs/LabelInfo: the model's class ids and names, for Nav2's semantic segmentation layer.

Published once per camera beside its mask (drn[/<camera>]/label_info), reliable + transient local,
so a subscriber that starts later still gets it. vision_msgs is a standard ROS package (rosdep key
``vision_msgs``); where it is not installed the node says so once and runs without this topic.
"""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header

QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                 reliability=ReliabilityPolicy.RELIABLE)
MISSING = ("vision_msgs is not installed ({error}): no {topics} (vision_msgs/LabelInfo for Nav2's semantic "
           "segmentation layer); install the ROS package vision_msgs (rosdep key vision_msgs) to publish it")


def message_types():
    """(LabelInfo, VisionClass), or the ImportError's text when vision_msgs cannot be imported."""
    try:
        from vision_msgs.msg import LabelInfo, VisionClass
    except ImportError as exc:
        return str(exc)
    return LabelInfo, VisionClass


def make(types, class_names, threshold: float, header):
    """LabelInfo: class id i is class_names[i] (the mask's pixel values; 255 = unknown is not a class)."""
    label_info, vision_class = types
    msg = label_info(class_map=[vision_class(class_id=i, class_name=n) for i, n in enumerate(class_names)],
                     threshold=float(threshold))
    msg.header.stamp = header.stamp
    msg.header.frame_id = header.frame_id
    return msg


def publish(node, cameras, class_names) -> None:
    """A LabelInfo publisher beside every camera's mask (``cam.pub_label_info``), published once; without
    vision_msgs, one warning naming the topics. Threshold 0.0: the node applies none (every pixel gets
    its most likely class; the confidence goes out per pixel instead)."""
    types = message_types()
    topics = [f"{c.prefix}/label_info" for c in cameras]
    if isinstance(types, str):
        node.get_logger().warning(MISSING.format(error=types, topics=", ".join(topics)))
        return
    header = Header(stamp=node.get_clock().now().to_msg())
    for cam, topic in zip(cameras, topics):
        cam.pub_label_info = node.create_publisher(types[0], topic, QOS)
        cam.pub_label_info.publish(make(types, class_names, 0.0, header))
