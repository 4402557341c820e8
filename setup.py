"""Build script of the tiny_node ament_python package (colcon and pip alike).

colcon (``colcon build``) installs the ROS layout: the ament index marker, ``package.xml``,
``launch/`` and ``config/`` under ``share/tiny_node`` and the ``tiny_node`` executable under
``lib/tiny_node`` (see ``setup.cfg``), so ``ros2 run tiny_node tiny_node`` and
``ros2 launch tiny_node tiny_node.launch.py`` work.  pip (``pip install -e '.[ros,dev]'``)
installs the same package plus its Python dependencies; ``tiny-node`` and ``tiny_node`` land
in the environment's ``bin/``.

The Fast DDS profile has one source, ``config/fastdds_profile.xml``;
``tiny_node/data/fastdds_profile.xml`` is a symlink to it, which ``build_py`` copies as a
regular file, so a wheel carries the profile as package data.
"""

from glob import glob

from setuptools import find_packages, setup

package_name = "tiny_node"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={package_name: ["py.typed", "data/*.xml", "sim/scenarios/*.yaml",
                                 "data/default_model/*", "data/default_model/onnx/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", sorted(glob("launch/*.launch.py"))),
        (
            "share/" + package_name + "/config",
            sorted(glob("config/*.yaml") + glob("config/*.xml")),
        ),
    ],
    python_requires=">=3.10",
    # Lower bounds only.  rclpy and the message packages are not here: a ROS install
    # provides them (apt/rosdep, see package.xml); the `ros` extra brings the PyPI wheels.
    install_requires=[
        "numpy>=1.23",
        "onnxruntime>=1.16",
        # reads the graphs that keep weights in external data (model.onnx_external); imported
        # only for those
        "onnx>=1.15",
        "opencv-python-headless>=4.8",
        # compressed camera frames: a JPEG with corrupt data is refused, not decoded to garbage
        "simplejpeg>=1.6",
        "PyYAML>=6.0",
        "rosbags>=0.11.6",  # apsw: bag.topics._Sqlite3Reader; before 0.11.6 sqlite3 parsed every definition at open
        # zstd for message- / file-compressed bags (bag.topics); the stdlib has it from 3.14
        "backports.zstd>=1.0; python_version < '3.14'",
        "tokenizers>=0.15",
        "matplotlib>=3.5",
        "tqdm>=4.60",
    ],
    extras_require={
        "ros": [
            "ros-rclpy[fastrtps]>=9.1",
            "ros-rosgraph-msgs>=2.3",
            "ros-std-msgs>=5.5",
            "ros-sensor-msgs>=5.5",
            "ros-nav-msgs>=5.5",
            "ros-geometry-msgs>=5.5",
            "ros-diagnostic-msgs>=5.5",
            "ros-lifecycle-msgs>=2.3",
        ],
        "dev": [
            "pytest>=7.3",
            "mcap>=1.1",  # the tests read bags with a second library; rosbags reads and writes mcap itself
            "ruff>=0.5",
            "mypy>=1.10",
            "types-PyYAML>=6.0",
            "colcon-core>=0.15",
            "colcon-ros>=0.4",
        ],
        # Official Euro NCAP 2026 colour bands / points for the scenario suite (falls back to
        # the reference table without it, and says so in each result).
        "ncap": [
            "euroncap-rating-2026>=5.4",
        ],
        "train": [
            "torch==2.13.0",
            # torch needs >= 77; colcon-core (dev extra) does not work with >= 80.
            "setuptools>=77,<80",
        ],
    },
    zip_safe=False,
    maintainer="tiny_node maintainers",
    maintainer_email="tiny-node@example.com",
    description=(
        "On-board brake / no-brake decisions from a small quantized model under a hard "
        "deadline, with a rule-based fallback."
    ),
    license="Apache-2.0",
    keywords=["ROS", "ROS 2", "AEB", "onnxruntime"],
    classifiers=[
        "Intended Audience :: Developers",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    entry_points={
        "console_scripts": [
            # The ROS executable: `ros2 run tiny_node tiny_node`, launch files.
            "tiny_node = tiny_node.ros.start:main",
            # The command-line tool: demo, bench, sim, bag replay, ...
            "tiny-node = tiny_node.cli:main",
        ],
    },
)
