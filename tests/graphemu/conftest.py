# graph_emulator comes from tests/conftest.py (pytest_plugins = ["tests.graphemu.fixtures"]).
