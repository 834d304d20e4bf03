"""ament_python package drn_perception (also pip-installable)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "drn_perception"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["assets/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    python_requires=">=3.10",
    # Kept permissive on purpose: on a robot numpy, OpenCV and PyYAML come from the ROS
    # install (python3-numpy, python3-opencv, python3-yaml) and torch from JetPack.
    # rosbags: seg_node reads every frame with its deserialiser (and drn-replay writes bags with it).
    # simplejpeg: strict JPEG decoding, so a corrupt compressed frame is reported, not silently repaired.
    # tqdm: the progress bars of drn-replay, drn-make-bag and the scene generator.
    install_requires=["numpy", "pyyaml", "rosbags", "simplejpeg", "tqdm"],
    extras_require={
        "onnx": ["onnx", "onnxruntime"],
        "openvino": ["openvino", "nncf"],  # OpenVINO backend (CPU, Intel GPU/NPU) and its int8 tool
        "torch": ["torch"],
        "train": ["torch", "tqdm", "tensorboard"],
        # CUDA memory for the TensorRT backend and drn-build-engine: cuda-python pinned to the CUDA
        # minor of each JetPack (TensorRT itself comes with JetPack; docs/tensorrt.md).
        "tensorrt-jp60": ["cuda-python==12.2.*"],  # JetPack 6.0: CUDA 12.2, TensorRT 8.6
        "tensorrt-jp6": ["cuda-python==12.6.*"],  # JetPack 6.1 / 6.2: CUDA 12.6, TensorRT 10.3
        "tensorrt-jp7": ["cuda-python==13.0.*"],  # JetPack 7.x: CUDA 13.0, TensorRT 10.13-10.16 / 11
    },
    zip_safe=True,
    maintainer="drn_perception maintainers",
    maintainer_email="drn-perception@example.com",
    description="DRN semantic segmentation node for ROS 2 with TensorRT/ONNX Runtime/PyTorch backends",
    license="BSD-3-Clause",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "seg_node = drn_perception.ros.node:main",
            "drn-replay = drn_perception.ros.replay:main",
            "drn-make-bag = drn_perception.ros.make_bag:main",
            "drn-demo = drn_perception.demo:main",
            "drn-train = drn_perception.training.train:main",
            "drn-eval = drn_perception.training.evaluate:main",
            "drn-export = drn_perception.deploy.export:main",
            "drn-quantize = drn_perception.deploy.quantize:main",
            "drn-build-engine = drn_perception.deploy.tensorrt_build:main",
            "drn-bench = drn_perception.bench.bench:main",
        ],
    },
)
