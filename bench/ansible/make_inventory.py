"""Write bench/ansible/inventory.ini and group_vars from the sandbox fleet and the
package's own endpoint catalog (the same 13 calls as the verification)."""

import json
import runpy
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
fleet = json.loads((ROOT / ".sandbox" / "fleet.json").read_text())
lines = ["[camera_api]"]
for host in fleet["hosts"]:
    lines.append(
        f"{host['name']} ansible_host={host['address']} ansible_user=root "
        f"ansible_ssh_private_key_file={fleet['ssh_key']} "
        f"ansible_ssh_common_args='-o UserKnownHostsFile={fleet['known_hosts']} -o StrictHostKeyChecking=yes'"
    )
(HERE / "inventory.ini").write_text("\n".join(lines) + "\n")

with urllib.request.urlopen(
        f"http://{fleet['hosts'][0]['address']}:8000/api/v1/alerts/rules?force_domain=false") as answer:
    rules = json.load(answer)["rules"]
# The verification rule (created by the package's own verification, which bench runs first).
rule_id = next(r["id"] for r in rules if r["name"] == "rollout-verification")
context = {"camera_id": "cam-verify", "rule_name": "rollout-verification", "rule_id": rule_id}
group = runpy.run_path(str(ROOT / "group_data" / "all.py"))
endpoints = [dict(e, path=e["path"].format(**context)) for e in group["endpoints"]]
for endpoint in endpoints:
    if "body" in endpoint:
        endpoint["body"] = json.loads(json.dumps(endpoint["body"]).replace("{camera_id}", "cam-verify")
                                      .replace("{rule_name}", "rollout-verification"))
(HERE / "group_vars").mkdir(exist_ok=True)
(HERE / "group_vars" / "camera_api.json").write_text(json.dumps({"endpoints": endpoints}, indent=1))
