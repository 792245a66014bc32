"""Suite-wide fixtures: the Graph emulator (``graph_emulator``) for every test directory."""
pytest_plugins = ["tests.graphemu.fixtures"]
