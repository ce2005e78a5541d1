"""ament_python package setup for cobot_cell."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "cobot_cell"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/urdf", glob("urdf/*.xacro")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    package_data={PACKAGE: ["py.typed", "hmi/static/*"]},
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="cobot_cell developers",
    maintainer_email="dev@cobot-cell.invalid",
    description="ROS 2 cell controller for collaborative robots",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "cobot-cell = cobot_cell.cli:main",
            "task_planner = cobot_cell.ros.planner_node:main",
            "sim_cobot = cobot_cell.ros.sim_cobot_node:main",
            "sim_infeed = cobot_cell.ros.sim_infeed_node:main",
            "supervisor = cobot_cell.ros.supervisor_node:main",
            "pendant_bridge = cobot_cell.ros.pendant_node:main",
            "hmi = cobot_cell.ros.hmi_node:main",
            "opcua_bridge = cobot_cell.ros.opcua_bridge:main",
            "mqtt_bridge = cobot_cell.ros.mqtt_bridge:main",
            "foxglove = cobot_cell.ros.foxglove_node:main",
        ],
    },
)
