"""Example portraits: public-domain photos that ship inside installed packages, found at run time (demo, web app)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

# (package, path inside the package): Grace Hopper (US Navy photo) and Eileen Collins (NASA portrait)
EXAMPLE_SOURCES = (
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    ("skimage", "data/astronaut.png"),
)


def _package_dirs(package: str) -> list[Path]:
    """Folders of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return []
    if spec is None or spec.submodule_search_locations is None:
        return []
    return [Path(location) for location in spec.submodule_search_locations]


def find_example_images() -> list[Path]:
    """Paths of the example portraits whose packages are installed (missing ones are skipped)."""
    found = []
    for package, relative in EXAMPLE_SOURCES:
        for folder in _package_dirs(package):
            path = folder / relative
            if path.is_file():
                found.append(path)
                break
    return found
