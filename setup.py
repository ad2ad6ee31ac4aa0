"""Package layout: one import root `roboalign`; the top-level `training/` folder is `roboalign.training`.

Everything else (metadata, dependencies) lives in pyproject.toml.
"""

from setuptools import find_packages, setup

PACKAGES = (
    ["roboalign"]
    + [f"roboalign.{p}" for p in find_packages("roboalign")]
    + ["roboalign.training"]
    + [f"roboalign.training.{p}" for p in find_packages("training")]
)

setup(
    packages=PACKAGES,
    package_dir={"roboalign": "roboalign", "roboalign.training": "training"},
    package_data={"roboalign": ["**/*.yaml", "**/*.json"], "roboalign.training": ["configs/*.yaml"]},
)
