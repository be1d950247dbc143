"""Package list: the Python packages under pl_pac_trs/ plus the shipped configs.

``configs/`` is mapped to ``pl_pac_trs.configs`` in pyproject.toml ([tool.setuptools.package-dir])
and installed as package data (every ``*.yaml`` under it); a mapped folder cannot be named in
``packages.find``, so the package list is here. Its sub-folders hold YAML only: they are data,
not packages, and setuptools' warning that they "would be ignored" as packages is silenced.
"""

import warnings

from setuptools import find_packages, setup

warnings.filterwarnings("ignore", message=r".*pl_pac_trs\.configs\..*")
setup(packages=[*find_packages(include=["pl_pac_trs*"]), "pl_pac_trs.configs"])
