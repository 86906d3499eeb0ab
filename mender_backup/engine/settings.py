"""What the environment configures, read once where a command starts (cli/common.settings(),
the helm plugin's _settings()) and passed down to the engine in its options. Nothing else in
the package reads os.environ, and nothing here runs at import.

Two kinds of names:
- those that are also a command-line option (`--destination`, `--keep-last`, ...): Typer reads
  them with the option, the flag wins and `--help` shows the name;
- the rest, here: S3 and Azure (AWS_* and AZURE_STORAGE_* for Mender's artifact store,
  MENDER_BACKUP_DEST_AWS_* and MENDER_BACKUP_DEST_AZURE_STORAGE_* over them for the destination;
  stores/settings.py), the Mender release a backup records, the size of
  /tmp, where the helm plugin saves its state; and the whole environment as read at the start,
  for what interprets its own names: the encryption keys (keys.py), the metrics and webhook
  (observe.py), the kubeconfig (kube/connection.py), helm's global flags (kube/helm.py).

A bad value is a UsageError naming the variable (one `error:` line, exit 2).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..stores.settings import DEST_PREFIX, StoreAccess

# what a backup records about the Mender release it was taken from (the chart sets the first
# three; `helm mender-backup upgrade` sets all of them on the backup that guards an upgrade)
MENDER_RELEASE = {"chart": "MENDER_BACKUP_MENDER_CHART", "chart_version": "MENDER_BACKUP_MENDER_CHART_VERSION",
                  "app_version": "MENDER_BACKUP_MENDER_APP_VERSION", "release": "MENDER_BACKUP_MENDER_RELEASE",
                  "revision": "MENDER_BACKUP_MENDER_REVISION", "upgrade": "MENDER_BACKUP_UPGRADE",
                  "upgrade_to": "MENDER_BACKUP_UPGRADE_TO"}
TMP_LIMIT = "MENDER_BACKUP_TMP_LIMIT"
STATE_DIR = "MENDER_BACKUP_STATE_DIR"


@dataclass(frozen=True)
class Settings:
    """`Settings()` is nothing configured (the standard AWS chain, no keys, no metrics): what a
    library caller or a unit test gets unless it builds its own."""
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)
    source_store: StoreAccess = StoreAccess()        # AWS_*, AZURE_STORAGE_*: Mender's artifact store
    destination_store: StoreAccess = StoreAccess()   # MENDER_BACKUP_DEST_AWS_*, _DEST_AZURE_STORAGE_* over them
    mender_release: Mapping[str, str] = field(default_factory=dict)   # MENDER_RELEASE's keys
    tmp_limit: int | None = None                  # bytes /tmp may hold (the emptyDir's sizeLimit)
    state_dir: str | None = None                  # where the helm plugin saves a restore's state

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "Settings":
        """The one read of the environment; `environ` is copied, later changes are not seen."""
        env = MappingProxyType(dict(environ))
        source = StoreAccess.from_env(env)
        return cls(
            environ=env,
            source_store=source,
            destination_store=StoreAccess.from_env(env, DEST_PREFIX, fallback=source),
            mender_release={k: env[v] for k, v in MENDER_RELEASE.items() if env.get(v)},
            tmp_limit=_quantity(env.get(TMP_LIMIT, "").strip()),
            state_dir=env.get(STATE_DIR) or None,
        )


def _quantity(raw: str) -> int | None:
    """A Kubernetes quantity (`512Mi`, `2G`), parsed by the Kubernetes client's own parser: the
    chart sets it to the /tmp emptyDir's sizeLimit, a value the API validated. Unreadable: no
    limit (statvfs still bounds what is used)."""
    if not raw:
        return None
    from kubernetes.utils.quantity import parse_quantity
    with contextlib.suppress(ValueError):
        return int(parse_quantity(raw))
    return None
