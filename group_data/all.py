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
#: Where uvicorn listens, and how many worker processes it forks. Every check
#: calls the service on this port from the host itself (127.0.0.1).
bind_host = "0.0.0.0"
bind_port = 8000
workers = 2

# --- Reaching the hosts (pyinfra's SSH connector) ----------------------------
#: Host-key checking of every connection (pyinfra's own default is
#: "accept-new"): "yes" refuses a host whose key is not already in the
#: known-hosts file (``ssh_known_hosts_file``, else ~/.ssh/known_hosts), so a
#: first connection, e.g. the ``write-secrets`` of a new host, never trusts
#: whoever answers. Weakening it is a choice made by this name, per inventory or
#: host: "accept-new" (trust on first use) or "no"; ``rollout status`` then says
#: so on every run.
ssh_strict_host_key_checking = "yes"

# --- The service's contract ---------------------------------------------------
# What the app reads and answers; the code reads these, never repeats them.
#: The switch the app reads at start-up: ``enabled`` names the variable that turns
#: the domain implementation on (true/false), ``percent`` the one with its share
#: of requests. Stage 0 writes enabled=false, percent=0; stage N enabled=true, percent=N.
switch_variables = {"enabled": "USE_DOMAIN_SERVICE", "percent": "ROLLOUT_PERCENT"}
#: The response header naming the implementation that answered: domain or legacy.
implementation_header = "X-Rollout-Implementation"
#: The query parameter that forces one implementation for a request
#: (``?force_domain=true`` domain, ``=false`` legacy).
force_domain_parameter = "force_domain"
#: Where each value the gate reads sits in the app's metrics JSON (dotted paths,
#: like Argo's jsonPath). Every count is cumulative since the app's instance
#: started (like a Prometheus counter); the gate judges differences over a
#: window, never these totals. ``instance`` changes on a restart (a counter
#: reset); the usage counts unforced requests only (?force_domain calls say
#: nothing about the draw); each implementation's ``latency_buckets`` is a list
#: of [upper bound ms, requests at or below it], the same bounds for both.
#: ``metrics_fields`` (below) overrides some.
metrics_field_defaults = {
    "instance": "started_at",
    "usage_requests": "unforced.requests",
    "usage_domain": "unforced.domain",
    "domain_requests": "implementations.domain.requests",
    "domain_errors": "implementations.domain.errors",
    "domain_latency_buckets": "implementations.domain.latency_buckets_ms",
    "legacy_requests": "implementations.legacy.requests",
    "legacy_errors": "implementations.legacy.errors",
    "legacy_latency_buckets": "implementations.legacy.latency_buckets_ms",
}

# --- Files on the host --------------------------------------------------------
#: Directory of the env files: root-owned, readable by the service group only.
env_dir = "/etc/camera-api"
#: The rollout switch (``switch_variables``): written every stage.
rollout_env_file = "/etc/camera-api/rollout.env"
#: DATABASE_URL / REDIS_URL: kept apart so ``--diff`` of a stage never shows them.
secrets_env_file = "/etc/camera-api/secrets.env"
#: The systemd unit written by the deploy.
unit_file = "/etc/systemd/system/camera-api.service"

# --- The release --------------------------------------------------------------
#: Percent of requests on the domain implementation, stage by stage (the seed's plan).
stage_plan = [10, 25, 50, 100]
#: How long each stage is observed, ``[minimum, maximum]`` (the seed's timetable:
#: 10 % 1-2 days, 25 % 3-5, 50 % a week, 100 % 1-2 weeks). Durations are seconds
#: or text (``90``, ``30m``, ``36h``, ``2d``), counted from the time the whole
#: fleet was on the stage (each host's record). Before the minimum, ``promote``
#: (and a forward ``deploy``) is refused with the time left unless the operator
#: passes ``--early REASON`` (kept in each host's history); the watch promotes only
#: once a stage is due. Past the maximum a stage not promoted is overdue (alerted
#: once). At 100 % "due" means the rollout is complete.
stage_durations = {10: ["1d", "2d"], 25: ["3d", "5d"], 50: ["7d", "7d"], 100: ["7d", "14d"]}
#: Divide every stage duration by this: the sandbox and the tests run the seed's
#: days in seconds (86400: a day per second). 1 in production.
time_compression = 1
#: Extra non-secret variables for the app's env file (e.g. the reference
#: service's fault knobs DOMAIN_ERROR_RATE / DOMAIN_EXTRA_LATENCY_MS for drills).
app_env = {}

# --- Secrets ------------------------------------------------------------------
#: The secrets env file's variables, each with the host-data key holding its value.
#: A stage change, a rollback or a check never writes this file: it is left on the
#: host as it is, and a host whose file lacks one of these variables is refused
#: (before anything is written) and fails the preparation check, by name.
secret_variables = {"DATABASE_URL": "database_url", "REDIS_URL": "redis_url"}
#: Write (or rotate) the secrets file in this run: ``--data write_secrets=true``
#: with deploy.py, or run ``tasks/secrets.py``. Refused before any operation when
#: a secret has no value: a missing value is never written as an empty file.
write_secrets = False
#: The values. Leave None here: set them per environment from a source outside
#: git (see inventories/prod.py). Written with mode 0640 and never printed, not
#: even by --diff or -v.
database_url = None
redis_url = None

# --- Health -------------------------------------------------------------------
#: Polled on the host itself after a restart; 200 means PostgreSQL and Redis answer.
health_path = "/api/v1/monitoring/health"
metrics_path = "/api/v1/monitoring/metrics"
#: Upper bound on waiting for a restarted unit to become healthy.
health_timeout_s = 60

# --- Checks after a stage change (tasks/preflight.py, tasks/verify.py, tasks/gate.py) ---
#: Run the preparation check, the endpoint verification and the metrics gate
#: from deploy.py after the stage is applied. Off: apply the stage only.
checks = True
#: Rollout records on each host (baseline P95 before a stage change, ...).
state_dir = "/var/lib/camera-rollout"
#: Where a run writes one JSON report per host and check (None: no files).
report_dir = None

#: The endpoints a verification calls with force_domain=false and =true, in order
#: (writes only touch the verification camera and the verification rule).
#: ``expect`` is the status both implementations must answer; ``retry``: a POST
#: that may be sent again after a server error (it sets a state or, like the
#: create that must conflict, writes nothing; GET, PUT and DELETE always may;
#: see verify_retries). A POST that adds something must not say so. Add one here.
verification_camera = "cam-verify"
verification_rule_name = "rollout-verification"
endpoints = [
    {"name": "list alert rules", "method": "GET", "path": "/api/v1/alerts/rules", "expect": 200},
    # The rule exists (created once by the verification), so creating it again is a conflict.
    {"name": "create alert rule", "method": "POST", "path": "/api/v1/alerts/rules", "expect": 409,
     "body": {"name": "{rule_name}", "camera_id": "{camera_id}", "metric": "offline_minutes",
              "operator": ">", "threshold": 5, "enabled": True}, "retry": True},
    {"name": "update alert rule", "method": "PUT", "path": "/api/v1/alerts/rules/{rule_id}",
     "expect": 200, "body": {"threshold": 10, "enabled": True}},
    {"name": "activate camera", "method": "POST", "path": "/api/v1/cameras/{camera_id}/activate",
     "expect": 200, "retry": True},
    {"name": "start camera", "method": "POST", "path": "/api/v1/cameras/{camera_id}/start",
     "expect": 200, "retry": True},
    {"name": "camera status", "method": "GET", "path": "/api/v1/cameras/{camera_id}/status", "expect": 200},
    {"name": "restart camera", "method": "POST", "path": "/api/v1/cameras/{camera_id}/restart",
     "expect": 200, "retry": True},
    {"name": "stop camera", "method": "POST", "path": "/api/v1/cameras/{camera_id}/stop",
     "expect": 200, "retry": True},
    {"name": "toggle auto-start", "method": "PUT", "path": "/api/v1/cameras/{camera_id}/auto-start",
     "expect": 200, "body": {"enabled": True}},
    {"name": "deactivate camera", "method": "POST", "path": "/api/v1/cameras/{camera_id}/deactivate",
     "expect": 200, "retry": True},
    {"name": "camera logs", "method": "GET", "path": "/api/v1/cameras/{camera_id}/logs?limit=20", "expect": 200},
    {"name": "batch status", "method": "POST", "path": "/api/v1/cameras/batch-status", "expect": 200,
     "body": {"camera_ids": ["{camera_id}"]}, "retry": True},
    {"name": "refresh cameras", "method": "POST", "path": "/api/v1/cameras/refresh",
     "expect": 200, "retry": True},
]
#: Data consistency across implementations: each check writes values[0] with
#: force_domain=true and reads it back with =false, then writes values[1] with
#: =false and reads it with =true; the ``field`` of the read (a dotted path,
#: ``name[key=value]`` picks a list element) must hold the value written.
#: Placeholders: {camera_id}, {rule_id}, {rule_name}; {value} in the body.
consistency_checks = [
    {"name": "alert rule threshold",
     "write": {"method": "PUT", "path": "/api/v1/alerts/rules/{rule_id}", "body": {"threshold": "{value}"}},
     "read": "/api/v1/alerts/rules", "field": "rules[id={rule_id}].threshold", "values": [7.5, 12.0]},
    {"name": "camera auto-start",
     "write": {"method": "PUT", "path": "/api/v1/cameras/{camera_id}/auto-start", "body": {"enabled": "{value}"}},
     "read": "/api/v1/cameras/{camera_id}/status", "field": "state.auto_start", "values": [False, True]},
]
#: A call of the verification that answers a server error (5xx) is repeated up
#: to this many times: a background error rate of b fails a call only with
#: probability b^(1 + retries), while an endpoint that always fails still does.
verify_retries = 2
#: Unforced requests whose implementation mix is tested against the stage (with
#: the binomial test at gate["usage_confidence"]).
unforced_requests = 200
#: Unforced requests of the legacy proof after a rollback. At stage 0 a single
#: domain answer fails the proof (no statistics needed); the requests only have
#: to reach every uvicorn worker.
legacy_proof_requests = 40
#: Only the GET endpoints, nothing written (``--data verify_read_only=true``).
verify_read_only = False

# --- The metrics gate -------------------------------------------------------------
#: Thresholds (the seed's numbers) and evidence rules; see rollout/gate.py
#: Thresholds for every key. Unknown keys are refused.
gate = {
    # The seed's aggregate rules, host-wide (both implementations), on the window:
    "error_rate_pass_below": 0.01,    # promote: error rate < 1 %
    "error_rate_abort_above": 0.05,   # roll back: error rate > 5 %
    "success_rate_pass_above": 0.99,  # promote: success > 99 %
    "success_rate_abort_below": 0.95, # roll back: success < 95 %
    "p95_max_ratio": 1.5,             # P95 <= 1.5 x baseline, else roll back
    "p95_min_increase_ms": 50.0,      # ...unless it grew by less than this (noise)
    # Binomial test of domain usage vs the stage. Strict on purpose: every host is
    # tested on every read, so at 99.9 % a fleet would see false alarms daily; a
    # broken switch (0 % or 25 % instead of 10 % over 200 requests) still fails
    # it by many orders of magnitude.
    "usage_confidence": 0.999999,
    "min_requests": 100,              # no verdict on fewer requests
    "abort_after": 2,                 # consecutive breaching reads before a roll back
    "max_read_failures": 3,           # consecutive unreadable answers: the gate errors
    # Side by side, domain against legacy in the same window (docs/gate.md):
    # the domain's own rates against the seed's thresholds above, its errors and
    # its P95 (with p95_max_ratio) against legacy's. Each abort is a sequential
    # test whose false alarms stay under alpha per rule and window however often
    # the gate reads.
    "alpha": 0.001,
    # No pass with fewer requests of either implementation in the window (it is
    # inconclusive): at 500, a domain failing 3 % (legacy clean) looks like a pass
    # in fewer than one window in a thousand, and the abort test needs ~600 of its
    # requests to catch it (docs/gate.md, bench/sensitivity.py).
    "min_requests_per_implementation": 500,
    "error_ratio_margin": 1.5,        # domain errors may reach 1.5 x legacy's...
    "error_rate_floor": 0.005,        # ...or 0.5 % of its requests: below that, no abort
    "domain_p95_min_increase_ms": 5.0,  # a domain P95 increase below this is noise
    # Paired answers compared (paired traffic only): the share of pairs whose
    # answers differ beyond legacy's own noise that is tolerated (0: one such
    # pair rolls back; it proves wrong data), and the pairs a pass needs.
    "responses_differ_tolerated": 0.0,
    "responses_min_pairs": 100,
}
# --- Where the gate reads its metrics (rollout/sources.py) ------------------------
#: "json": the app's metrics endpoint (metrics_path) read on each host over SSH;
#: "prometheus": the Prometheus server below, asked from the machine the run
#: executes on. Both feed the same judgement (the side-by-side windowed rules).
metrics_provider = "json"
#: The Prometheus provider (docs/monitoring.md). ``url``: the server (credentials
#: may sit in it, https://user:token@host; no message shows it). ``queries``: PromQL
#: templates, like Argo Rollouts' AnalysisTemplate: ``{{host}}`` (the inventory
#: name, which the scrape config must put in a ``host`` label), ``{{implementation}}``
#: (domain, legacy) and ``{{window}}`` (the gate's window so far, e.g. 93s) filled
#: in. ``min_window_s``: no read over a shorter window (increase() needs two
#: scrapes in it: at least 2.5 scrape intervals). An empty result, NaN or a query
#: error is an unreadable read, never a zero.
prometheus = {
    "url": None,
    "timeout_s": 10,
    "min_window_s": 40,
    "queries": {
        "instance": 'max(camera_api_start_time_seconds{host="{{host}}"})',
        "scraped_at": 'max(timestamp(camera_api_start_time_seconds{host="{{host}}"}))',
        "usage_requests": 'sum(increase(camera_api_requests_total{host="{{host}}",forced="false"}[{{window}}]))',
        "usage_domain": 'sum(increase(camera_api_requests_total{host="{{host}}",forced="false",'
                        'implementation="domain"}[{{window}}]))',
        "requests": 'sum(increase(camera_api_requests_total{host="{{host}}",'
                    'implementation="{{implementation}}"}[{{window}}]))',
        "errors": 'sum(increase(camera_api_requests_total{host="{{host}}",implementation="{{implementation}}",'
                  'status_class="5xx"}[{{window}}]))',
        "latency_buckets": 'sum by (le) (increase(camera_api_request_duration_seconds_bucket{host="{{host}}",'
                           'implementation="{{implementation}}"}[{{window}}]))',
    },
}
#: The app's Prometheus metric names, for the alert rules (rollout rules) and the
#: dashboard: a counter of requests labelled implementation, status_class (2xx..5xx)
#: and forced, and a latency histogram in seconds labelled implementation.
prometheus_metric_names = {"requests": "camera_api_requests_total",
                           "latency": "camera_api_request_duration_seconds"}
#: node_exporter's textfile directory on the hosts (Debian's
#: prometheus-node-exporter reads this one): the record and the gate write the
#: rollout's own state there as metrics (rollout/state_metrics.py), only where the
#: directory exists. None: never.
rollout_textfile_dir = "/var/lib/prometheus/node-exporter"
#: Overrides of some of ``metrics_field_defaults`` (the others are kept), for an
#: app whose metrics differ, e.g. ``--data 'metrics_fields={"p95_ms": "latency.p95"}'``.
metrics_fields = {}
#: Observation window after a stage change, polled every gate_interval_s.
#: Short for the sandbox; production sets hours (and promotes with the CLI).
soak_s = 30
gate_interval_s = 5
#: Drive smoke traffic at the hosts during the baseline read and the soak window
#: (like Flagger's load tester): unforced GETs, which the stage's draw splits.
#: Off on production inventories.
smoke_traffic = False
smoke_requests_per_s = 20
#: Paired traffic during a gate (rollout/paired.py; docs/gate.md): each GET of
#: the catalog not marked ``paired: false`` sent with ``force_domain=true`` and
#: ``=false`` back to back, so a gate gathers evidence of both implementations
#: whatever the stage's draw gives the domain, and the two answers are compared
#: (the side-by-side row "responses differ"). Off by default: opt in once the
#: GET endpoints are known to be cheap.
paired_traffic = False
#: Its budget: pairs a second at most ``paired_share`` x the host's real
#: (unforced) requests a second / 2 (a pair is two requests), and never more
#: than ``paired_pairs_per_s``; at most ``paired_max_pairs`` per gate. A host
#: without real traffic gets none. ``paired_share = None``: the cap alone.
paired_share = 0.2
paired_pairs_per_s = 20
paired_max_pairs = 20000
#: Judge the hosts of one gate pooled as well as each alone (docs/gate.md, "The
#: stage's hosts pooled"). False: each host alone, as before issue 22 (kept for
#: the time-to-safety benchmark's comparison, bench/time_to_safety.py).
gate_pooled = True
#: The window of ``rollout check`` and ``promote``: since the previous check of
#: the stage (a cursor kept on the host, in state_dir), or with a look-back in
#: seconds, since the newest cursor at least that old. Without a cursor: since
#: the restart that began the stage.
gate_lookback_s = None
#: Cursors kept per host (one per check of the current stage).
gate_cursors_kept = 48
#: On an abort during deploy.py: roll the host back (stage 0) and prove legacy.
rollback_on_abort = True

# --- The watch (rollout watch ENV: one tick of the controller) -------------------
#: What a tick does, each minute from a timer (tasks/autopilot.py), cron or CI:
#: judge the window since the previous passing check (one gate read, or
#: ``watch_soak_s`` of reads), roll back on an abort, promote a stage that is due
#: and passing (``auto_promote``), alert on what a person must know.
#: Promote by itself once a stage is due and passing. Off: the watch judges, rolls
#: back and alerts "due"; a person runs ``rollout promote``.
auto_promote = False
#: Gate window of a tick (0: one read, judged on what the hosts served since the
#: previous passing check). Paired traffic runs only inside a window: with
#: ``paired_traffic`` on, give the tick one (e.g. 60).
watch_soak_s = 0
#: Commands run on the control machine before a promotion, in order, with {env},
#: {stage} and {next_stage} filled in; each must exit 0 within
#: ``confirm_hook_timeout_s`` (Flagger's confirm-promotion webhook), e.g. "no open
#: user complaints" from a ticket system. A refusal holds the stage (alerted once)
#: and the next tick asks again.
confirm_hooks = []
confirm_hook_timeout_s = 60
#: A rollout lock older than this is reported as stale (alerted once); the watch
#: never breaks another's lock (``rollout unlock ENV --force`` does).
lock_stale_after_s = 4 * 3600
#: Consecutive failed ticks (a host unreachable, a run that broke) before
#: "watch failing" is alerted (once, until a tick succeeds again).
watch_failing_after = 3

# --- Batches (rollout deploy / promote / watch) ----------------------------------
#: Batch sizes of a stage change: hosts or percent of the fleet; the last repeats
#: (``--batches`` overrides it): the canary, a quarter, the rest.
batches = "1,25%,100%"
#: Gate window after each batch but the last (an abort ends it early); the last
#: batch is judged over ``soak_s`` (``--batch-soak`` / ``--soak`` override them).
batch_soak_s = 60
#: The first batch's host; None: the first host by name.
canary = None
#: Commands run on the control machine before and after each batch, in order,
#: with {hosts} (each shell-quoted, space separated), {stage} and {batch} filled
#: in (never put a placeholder inside quotes of your own); a failing
#: command fails the batch. E.g. drain the hosts from a load balancer before
#: their restart and put them back after:
#:   batch_hooks = {"before": ["lb-drain {hosts}"], "after": ["lb-enable {hosts}"]}
batch_hooks = {}
#: Upper bound of one batch hook; then it is killed (with its process group) and
#: fails its batch.
batch_hook_timeout_s = 600
#: Hooks of every kind (batch hooks, confirm hooks) run with a minimal
#: environment: PATH, HOME, USER, LOGNAME, LANG, LC_*, TZ, TMPDIR. Nothing else of
#: this machine's environment reaches them, not the secrets an inventory reads nor
#: the alert sinks' webhook URLs, unless named here, e.g. ``["LB_API_TOKEN_FILE"]``
#: (an alert sink's URL variable is refused).
hook_env = []
#: Batches of `rollout rollback`: every host at once unless a load balancer needs
#: some hosts serving while others restart (then e.g. "50%", with the hooks above).
rollback_batches = "100%"

# --- Alerts -------------------------------------------------------------------
#: Where the rollout's events go (rollout/alerts.py lists the kinds: stage-started,
#: promoted, due, aborted, rolled-back, overdue, ...): each sink is a ``webhook``
#: (the event as JSON) or ``slack`` (an incoming webhook, ``{"text": ...}``), and
#: ``events`` limits it to some kinds (left out: every kind). ``url_env`` names the
#: environment variable of the control machine that holds the URL: a webhook URL
#: is a secret (anyone who has it may post), so it is never written here nor in
#: git, and never printed, not even in a failure. The URL must be https://, or
#: http:// to loopback (a local relay); plain http:// to another host is refused
#: (the URL and the alerts would cross the network unencrypted) unless the sink
#: says ``"allow_http": True``. Empty: no alerts. E.g.
#:   alert_sinks = [
#:       {"name": "ops", "kind": "webhook", "url_env": "ROLLOUT_ALERT_WEBHOOK_URL"},
#:       {"name": "chat", "kind": "slack", "url_env": "ROLLOUT_SLACK_WEBHOOK_URL",
#:        "events": ["due", "held", "aborted", "rolled-back", "overdue"]},
#:   ]
alert_sinks = []
#: Seconds to connect to a sink, and again to wait for its answer, per attempt.
alert_timeout_s = 5
#: Extra attempts after a connection error, a timeout, a 5xx or a 429 answer
#: (never after another 4xx), with a pause doubling from one second. An alert
#: that still fails is said and the rollout goes on.
alert_retries = 3

# --- Autopilot (tasks/autopilot.py) ---------------------------------------------
# `rollout <autopilot_command> <autopilot_env>` on a timer, installed on a control
# host by ``pyinfra CONTROL_INVENTORY tasks/autopilot.py --data autopilot_env=prod``
# (docs/autopilot.md). These keys concern the control host only; the fleet's
# hosts never read them.
#: ``present`` installs (or updates) the autopilot; ``absent`` removes everything
#: the install put there: timer, service, files, venv, user and its home.
autopilot_state = "present"
#: The environment the timer watches: ``inventories/<name>.py`` of autopilot_project.
#: Required to install (``--data autopilot_env=prod``).
autopilot_env = None
#: The rollout subcommand of each tick: ``watch`` (judge the fleet, promote or roll
#: back, alert), ``check`` (a judge-only autopilot: the gate, and a rollback when it
#: fails; add ``--no-rollback`` to only alert), ``status`` (read only).
autopilot_command = "watch"
#: Name of the systemd units (``<name>.service``, ``<name>.timer``) and of the
#: journal's identifier; ``/etc/<name>/`` holds the alerts file.
autopilot_unit = "rollout-watch"
#: The system user the ticks run as (no login shell), and its home: the venv,
#: the project, the SSH key. Never root.
autopilot_user = "rollout-watch"
autopilot_home = "/var/lib/rollout-watch"
#: The controller's own state between ticks (``ROLLOUT_STATE_DIR`` of the service).
autopilot_state_dir = "/var/lib/rollout-watch/state"
#: Where the tool comes from; give exactly one. ``autopilot_wheelhouse``: a
#: directory of wheels on the machine running the install, the tool's own
#: ``camera_rollout-*.whl`` among them (``scripts/wheelhouse.sh DIR``), copied to
#: the control host and installed with ``pip --no-index`` (for a control host
#: without PyPI); reinstalled only when the wheels changed. ``autopilot_package``:
#: a pip requirement the control host installs from its own index.
autopilot_wheelhouse = None
autopilot_package = None
#: The operator's project on this machine: its ``inventories/`` and ``group_data/``
#: (only those two folders) are copied to ``<home>/project``, root's, readable by
#: the user (no other). Its inventory for the control host names the key and known hosts
#: below by their place there: ``~/.ssh/id_rollout``, ``~/.ssh/known_hosts``.
autopilot_project = None
#: The SSH private key the ticks reach the fleet with (a file here), installed
#: as ``<home>/.ssh/id_rollout`` (0640 root:<user>), and the fleet's host keys
#: (``<home>/.ssh/known_hosts``, read-only to the ticks: strict checking, every
#: host listed; ``accept-new`` could not add a key there). The
#: key's contents are never printed, not even by --diff.
autopilot_ssh_key = None
autopilot_known_hosts = None
#: NAMES of environment variables (e.g. ``["ROLLOUT_SLACK_WEBHOOK_URL"]``) whose
#: values, taken from the environment of the operator running the install, are
#: written to ``/etc/<autopilot_unit>/alerts.env`` (root:<user> 0640, replaced
#: atomically, never printed). A listed variable without a value is refused
#: before any operation; an empty list removes the file.
autopilot_alert_env = []
#: A tick every ``autopilot_interval`` (a systemd time span), counted from the
#: start of the previous one; a tick still running is never started twice.
autopilot_interval = "1min"
#: Upper bound of one tick (it may promote in batches); then it is killed.
autopilot_timeout = "1h"

# --- Alert rules (rollout rules ENV > rules.yml; monitoring/rules.yml is the defaults') ---
#: The seed's alert rules for Prometheus, rendered from ``gate`` above (one source
#: of thresholds) by rollout/alert_rules.py. ``window``: the rate window of every
#: rule; ``latency_for``: how long the domain's P95 must stay above the bound (a
#: P95 over a short window is noisy; the error and success rules fire at once,
#: as the seed asks); ``min_requests_per_s``: an implementation's traffic below
#: which a host's rules stay quiet (one failed request of one is not a page);
#: ``severity``: the alerts' label.
alert_rules = {"window": "1m", "latency_for": "2m", "min_requests_per_s": 0.5, "severity": "page"}
