"""@fake hosts for the unit tests: pyinfra's fake connector answers every command
with nothing, except the probe calls scripted here (no lock held, records
written), so deploy.py and the rollback task run their whole plan."""

import json

_responses = {
    "camera-rollout-probe status": json.dumps({"lock": None, "file_switch": None, "process_switch": None}),
    "camera-rollout-probe record": json.dumps({"recorded": True}),
    "camera-rollout-probe lock": json.dumps({"acquired": True, "holder": {}}),
    "camera-rollout-probe unlock": json.dumps({"released": True, "holder": None}),
}

# The secrets file the hosts hold already (the EnvFileKeys fact: names only).
_responses["then echo present"] = ["present", "DATABASE_URL", "REDIS_URL"]

camera_api = [
    (f"@fake/api-{n}", {"fake_responses": _responses, "fake_delay": 0, "fake_delay_jitter": 0})
    for n in (1, 2)
]
