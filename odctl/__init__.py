"""odctl: command-line client for odbackupd."""
