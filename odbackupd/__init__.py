"""odbackupd: encrypted, verified, off-site snapshots in OneDrive."""

__version__ = "0.1.0"
