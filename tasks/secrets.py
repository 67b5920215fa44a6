"""Write (or rotate) the secrets env file, on purpose and only with every value:

    CAMERA_API_DATABASE_URL=... CAMERA_API_REDIS_URL=... \\
        pyinfra inventories/prod.py tasks/secrets.py

Refused before any operation when a secret has no value (never an empty file).
The file is replaced atomically, its contents never shown (not even by
``--diff``); the service is restarted only if the file changed, then must be
healthy. The rollout stage is not touched.
"""

from pyinfra import host

from rollout import hoststate
from tasks import checks
from tasks.entry import begin
from tasks.stage import restart_and_wait, write_secrets_file

begin(writes_secrets=True)
# One read of the host's state, the secrets file's checksum with it (never its content).
known = hoststate.read(host, secrets_checksum=True)
checks.lock("check", known)
secrets = write_secrets_file(known)
restart_and_wait(secrets.did_change, "its secrets file changed", known)
