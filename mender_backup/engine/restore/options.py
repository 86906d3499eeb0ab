"""What a restore is asked to do (the front ends fill it in: cli, helm)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...format.encryption import Keyring
from ..settings import Settings


@dataclass
class RestoreOptions:
    mongodb_url: str
    backup_id: str | None = None
    source: str | None = None              # where the backups are (the backup destination)
    archive: str | None = None             # or: a plain mongodump archive (file or s3 URL)
    artifacts_bucket: str | None = None    # target bucket for the artifacts
    databases: list[str] = field(default_factory=list)
    drop: bool = False
    dry_run: bool = False
    oplog_replay: bool | None = None       # None: replay a consistent backup's oplog, not a vendor archive's
    to_time: str | None = None             # replay oplog slices up to this time (point-in-time recovery)
    users_and_roles: bool = False          # admin.system.users/roles, as mongorestore merges them
    keyring: Keyring | None = None         # for encrypted backups
    secrets: bool = False                  # also put Mender's key Secrets back (Kubernetes API)
    overwrite_secrets: bool = False        # replace live Secrets that hold other keys
    secrets_namespace: str = ""            # default: the namespace they were read from
    db_prefix: str = ""                    # restore database X as <prefix>X (verify --restore-into)
    skip_artifacts: bool = False           # databases only, on purpose (no warning)
    tenant_storage_map: list[str] = field(default_factory=list)   # TENANT=BUCKET: where its artifacts move
    verify: str = "full"                   # full: read every document back; counts: the server's counts only
    settings: Settings = Settings()        # S3, the kubeconfig, the keys when `keyring` is None
