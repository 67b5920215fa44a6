"""Write (or rotate) the secrets env file, on purpose and only with every value:

    CAMERA_API_DATABASE_URL=... CAMERA_API_REDIS_URL=... \\
        pyinfra inventories/prod.py tasks/secrets.py

Refused before any operation when a secret has no value (never an empty file).
The file is replaced atomically, its contents never shown (not even by
``--diff``); the service is restarted only if the file changed, then must be
healthy. The rollout stage is not touched. On a fresh host (no rollout env
file yet, so no stage to run) the env directory is made and the file written;
the service starts with its first stage (``rollout deploy ENV --stage 0``).
"""

from pyinfra import host

from rollout import hoststate
from tasks import checks
from tasks.entry import begin
from tasks.stage import restart_and_wait, write_secrets_file

begin(writes_secrets=True)
# One read of the host's state, the secrets file's checksum with it (never its content).
known = hoststate.read(host, secrets_checksum=True)
checks.lock(action="check", known=known)
secrets = write_secrets_file(known)
if hoststate.path_state(known, host.data.rollout_env_file)["type"] == "file":
    restart_and_wait(secrets.did_change, "its secrets file changed", known)
else:
    host.log(f"no stage on this host yet ({host.data.rollout_env_file} is missing): not restarted; "
             "`rollout deploy ENV --stage 0` starts the service")
