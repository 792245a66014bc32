from tests.snapshot.conftest import age_key, setup  # noqa: F401 - the same config-writing fixtures
