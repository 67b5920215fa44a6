"""camera-rollout's sandbox: a fleet of real systemd hosts under systemd-nspawn
with the reference service, its PostgreSQL and Redis, a load balancer, a load
generator and power drills. A separate distribution (camera-rollout-sandbox):
the product (``rollout``) never imports it; it uses the product only through
its public names and its deploy files."""
