"""Package discovery for the one ``carepath`` distribution (everything else is in pyproject.toml).

The repository's top-level folders map onto one import root (``carepath`` = ``engine/``,
``carepath.plugins`` = ``plugins/`` ...). setuptools cannot discover packages under such a
mapping from pyproject.toml alone, so the package list is found here, folder by folder, rather
than kept by hand: a new sub-package is in the wheel without anyone remembering to list it.
"""

from setuptools import find_packages, setup

ROOTS = {"carepath": "engine", "carepath.plugins": "plugins", "carepath.connectors": "connectors",
         "carepath.journeys": "journeys"}

packages = []
for name, folder in ROOTS.items():
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(folder, exclude=["*.__pycache__"])]

setup(package_dir=ROOTS, packages=packages)
