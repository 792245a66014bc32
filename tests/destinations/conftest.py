from __future__ import annotations

import pytest

from tests.snapshot.conftest import Setup


@pytest.fixture
def setup(tmp_path):  # noqa: ANN001, ANN201
    """A config with one local destination "usb" and one job "t" (tests/snapshot's)."""
    return Setup(tmp_path)
