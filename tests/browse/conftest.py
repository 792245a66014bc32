from tests.onedrive.conftest import od  # noqa: F401 - the Graph emulator's OneDrive setup
from tests.snapshot.conftest import age_key, setup  # noqa: F401 - a local destination, a real age key
