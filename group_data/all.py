"""Every default of the rollout, in one documented place.

pyinfra loads this file for every host when run from the project root
(``pyinfra inventories/ENV.py deploy.py``). Override per environment in
``group_data/<inventory-name>.py`` (a host file ``inventories/prod.py`` puts its
hosts in group ``prod``) or per host in the inventory. Names without a leading
underscore become host data.
"""

# --- The service --------------------------------------------------------------
#: systemd unit name (without ``.service``).
service_name = "camera-api"
#: Unprivileged user and group that run uvicorn; the group may read the env files.
service_user = "camera-api"
service_group = "camera-api"
#: Checkout of the app (holds ``src/`` and ``config/cameras.yaml``) and its venv.
app_dir = "/opt/camera-api"
venv_dir = "/opt/camera-api/venv"
#: The ASGI app uvicorn serves, as in the seed (``src.api.app:app``).
app_module = "src.api.app:app"
#: Where uvicorn listens, and how many worker processes it forks.
bind_host = "0.0.0.0"
bind_port = 8000
workers = 2

# --- Files on the host --------------------------------------------------------
#: Directory of the env files: root-owned, readable by the service group only.
env_dir = "/etc/camera-api"
#: The rollout switch (USE_DOMAIN_SERVICE, ROLLOUT_PERCENT): written every stage.
rollout_env_file = "/etc/camera-api/rollout.env"
#: DATABASE_URL / REDIS_URL: kept apart so ``--diff`` of a stage never shows them.
secrets_env_file = "/etc/camera-api/secrets.env"
#: The systemd unit written by the deploy.
unit_file = "/etc/systemd/system/camera-api.service"

# --- The release --------------------------------------------------------------
#: Percent of requests on the domain implementation, stage by stage (the seed's plan).
stage_plan = [10, 25, 50, 100]
#: Extra non-secret variables for the app's env file (e.g. the reference
#: service's fault knobs DOMAIN_ERROR_RATE / DOMAIN_EXTRA_LATENCY_MS for drills).
app_env = {}

# --- Secrets ------------------------------------------------------------------
#: Values for the secrets env file. Leave None here: set them per environment from
#: a source outside git (see inventories/prod.py). They are written to the host with
#: mode 0640 and never printed, not even by --diff or -v.
database_url = None
redis_url = None

# --- Health -------------------------------------------------------------------
#: Polled on the host itself after a restart; 200 means PostgreSQL and Redis answer.
health_path = "/api/v1/monitoring/health"
metrics_path = "/api/v1/monitoring/metrics"
#: Upper bound on waiting for a restarted unit to become healthy.
health_timeout_s = 60

# --- Reference-service install (tasks/app.py) ---------------------------------
#: When true, deploy.py first installs the reference service (sandbox only; a real
#: fleet gets its app from its own release process).
install_app = False
#: Wheelhouse built on the control machine (hosts have no package index).
wheelhouse_dir = ".sandbox/wheelhouse"
