"""mender-backup: backup and restore for Mender Server (MongoDB + artifact bucket)."""

__version__ = "0.1.0"
