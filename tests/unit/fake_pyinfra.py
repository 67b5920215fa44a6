"""pyinfra's CLI whose fake connector also logs what a command gets on stdin:
the spec of a probe ``write`` (rollout/hostprobe.py) with each file's content
replaced by its sha256 and length, so a test sees what would be written where,
with which owner and mode, without a file's text (a secret) in any output.

    python tests/unit/fake_pyinfra.py <pyinfra's arguments>
"""

import hashlib
import json
import sys

from pyinfra.connectors.fake import FakeConnector
from pyinfra_cli.main import main

_simulate = FakeConnector.run_shell_command


def _shown(one: dict) -> dict:
    content = one.get("content") if "content" in one else one.get("content_b64")
    shown = {k: v for k, v in one.items() if k not in ("content", "content_b64")}
    if isinstance(content, str):
        shown.update(content_sha256=hashlib.sha256(content.encode()).hexdigest(), content_length=len(content))
    return shown


def run_shell_command(self, command, print_output=False, print_input=False, **arguments):
    stdin = arguments.get("_stdin")
    spec = json.loads(stdin) if stdin is not None else None
    if isinstance(spec, dict) and all("content" in one or "content_b64" in one for one in spec.get("files") or [spec]):
        files = [_shown(one) for one in spec.get("files") or [spec]]
        print(f"[fake] stdin on {self.host.name}: {json.dumps(files, sort_keys=True)}", file=sys.stderr)
    return _simulate(self, command, print_output, print_input, **arguments)


FakeConnector.run_shell_command = run_shell_command

if __name__ == "__main__":
    sys.argv[0] = "pyinfra"
    main()
