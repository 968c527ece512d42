"""Fixtures for the image tests: a private registry (Debian's docker-registry, CNCF
distribution 2.8) on a free loopback port, started and stopped by the test session."""
from __future__ import annotations

import pathlib
import shutil
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import imagelib  # noqa: E402


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    exe = shutil.which("docker-registry")
    if exe is None:
        pytest.fail("docker-registry is not installed (scripts/setup.sh)")
    root = tmp_path_factory.mktemp("registry")
    with imagelib.Registry(root) as reg:
        yield reg


@pytest.fixture(scope="session")
def built():
    """make images' outputs; the test target builds them first."""
    for p in (imagelib.RUNNER, imagelib.LAYOUTS / "wasm-visits-native" / "index.json",
              imagelib.LAYOUTS / "wasm-visits-image" / "index.json"):
        if not p.exists():
            pytest.fail(f"{p} is missing: run `make images build` (make test-images does)")
    return imagelib.LAYOUTS
