"""The built-in destination kinds: each module here registers one (config/destkinds.py).

The configuration is imported first, so that whichever of the two a program imports
first, the registry has loaded every module of this package before the schema is made.
"""

import odbackupd.config  # noqa: F401
