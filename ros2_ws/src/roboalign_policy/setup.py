"""ament_python package of the RoboAlign ROS 2 nodes; launch files come from the repo's top-level launch/."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "roboalign_policy"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={f"{PACKAGE}.console": ["static/*"]},  # the console's page (plain HTML/JS/CSS)
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="RoboAlign maintainers",
    maintainer_email="maintainers@roboalign.example.com",
    description="RoboAlign ROS 2 nodes: policy, bridge, camera, simulated robot, franka_gripper relay.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            f"policy_node = {PACKAGE}.policy_node:main",
            f"bridge_node = {PACKAGE}.bridge_node:main",
            f"camera_node = {PACKAGE}.camera_node:main",
            f"sim_robot_node = {PACKAGE}.sim_robot_node:main",
            f"gripper_relay = {PACKAGE}.gripper_relay:main",
            f"teleop_node = {PACKAGE}.teleop_node:main",
            f"console = {PACKAGE}.console.node:main",
        ],
    },
)
