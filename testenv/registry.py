"""The CNCF distribution registry (`registry serve`, github.com/distribution/distribution/v3,
built by `make test-env`): the OCI registry a release is pushed to and the test node pulls
from. Plain HTTP on 127.0.0.1, as containerd, helm (`--plain-http`) and image-sign reach a
registry on this machine; no TLS, no auth (a public registry's read side)."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .servers import Server, _spawn, _wait, free_port, tool


@dataclass
class Registry:
    server: Server
    host: str                     # 127.0.0.1:PORT

    def ready(self) -> bool:
        with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2) as r:
            return r.status == 200

    def stop(self) -> None:
        self.server.stop()


def start_registry(workdir: Path) -> Registry:
    port = free_port()
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    config = workdir / "config.yml"
    config.write_text(f"""version: 0.1
log: {{level: warn}}
storage:
  filesystem: {{rootdirectory: {workdir / 'data'}}}
  delete: {{enabled: true}}
http:
  addr: 127.0.0.1:{port}
  secret: testenv-only
""")
    server = _spawn("registry", [str(tool("registry")), "serve", str(config)], workdir, port)
    registry = Registry(server, f"127.0.0.1:{port}")
    _wait(registry.ready, "registry", server.proc, server.log, timeout=30)
    return registry
