"""pytest fixtures for tests that talk to the emulator.

Use from any test directory by adding to ``tests/conftest.py``::

    pytest_plugins = ["tests.graphemu.fixtures"]

Options per test with the ``graphemu`` marker (keyword arguments of GraphEmulator)::

    @pytest.mark.graphemu(mode="business", device_code_interval=0)
    def test_x(graph_emulator): ...
"""

from __future__ import annotations

import pytest

from .emulator import GraphEmulator


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "graphemu(**options): GraphEmulator options for the graph_emulator fixture")


@pytest.fixture
def graph_emulator(request, tmp_path):
    """A started GraphEmulator in tmp_path (personal mode, seed 0, msal-friendly polling)."""
    marker = request.node.get_closest_marker("graphemu")
    options = dict(marker.kwargs) if marker else {}
    options.setdefault("device_code_interval", 0)
    emu = GraphEmulator(tmp_path / "graphemu", **options)
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()
    assert not emu.internal_errors, "graphemu internal errors:\n" + "\n".join(
        emu.internal_errors)
