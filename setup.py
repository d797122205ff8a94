"""Packaging that pyproject.toml cannot say: the shipped data files have one home, the repository top.

``configs/`` and ``graph_data/wnids/`` stay where people look for them in a checkout; the wheel
carries the same files as the packages ``kgzsl.data.configs`` and ``kgzsl.data.wnids`` (setuptools'
``package_dir`` maps those package names onto the top-level folders at build time), where
:func:`kgzsl.utils.paths.shipped_dir` finds them. The page of ``kgzsl serve`` (``kgzsl/serve/static/``)
is package data too, and so is ``py.typed`` (PEP 561: the package is typed). Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

SHIPPED = {"kgzsl.data.configs": "configs", "kgzsl.data.wnids": "graph_data/wnids"}

setup(
    # kgzsl.data and kgzsl.serve.static hold data only (no __init__.py): named here, as setuptools wants them
    packages=find_packages(include=["kgzsl", "kgzsl.*"]) + ["kgzsl.data", "kgzsl.serve.static"] + list(SHIPPED),
    package_dir=SHIPPED,
    package_data={"kgzsl": ["py.typed"], "kgzsl.data": ["lexnames"], "kgzsl.serve.static": ["*"],
                  "kgzsl.data.configs": ["*.yaml"], "kgzsl.data.wnids": ["*.txt", "LICENSE-*", "NOTICE.md"]},
)
