"""@fake hosts for the sandbox's deploy files (install_app.py, install_stub.py):
``new-1`` has nothing yet; ``old-1`` has the service's unit already (so a
changed app restarts it). Run from the project root: group_data/all.py applies."""

import re

_UNIT_STAT = (
    "user=root group=root mode=-rw-r--r-- atime=1700000000 mtime=1700000000 ctime=1700000000 "
    "size=900 '/etc/systemd/system/camera-api.service'"
)

_LINUX = {"uname -s": "Linux", "command -v": "/usr/sbin/found"}
_UNIT = {re.compile(r"stat -c .*/etc/systemd/system/camera-api\.service"): _UNIT_STAT}

camera_api = [
    ("@fake/new-1", {"fake_responses": _LINUX, "fake_delay": 0, "fake_delay_jitter": 0}),
    ("@fake/old-1", {"fake_responses": {**_LINUX, **_UNIT}, "fake_delay": 0, "fake_delay_jitter": 0}),
]
