from .fixtures import graph_emulator, pytest_configure  # noqa: F401
