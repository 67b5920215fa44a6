"""@fake hosts for the unit tests: pyinfra's fake connector answers every command
with nothing, except the probe calls scripted here (no lock held, records
written), so deploy.py and the rollback task run their whole plan."""

import json

_responses = {
    "probe.py status": json.dumps({"lock": None, "file_switch": None, "process_switch": None}),
    "probe.py record": json.dumps({"recorded": True}),
    "probe.py lock": json.dumps({"acquired": True, "holder": {}}),
    "probe.py unlock": json.dumps({"released": True, "holder": None}),
}

camera_api = [
    (f"@fake/api-{n}", {"fake_responses": _responses, "fake_delay": 0, "fake_delay_jitter": 0})
    for n in (1, 2)
]
