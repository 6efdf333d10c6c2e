"""`python -m wakedock.health`: the healthcheck without the whole CLI (health/cli.py)."""

from wakedock.health.cli import standalone_healthcheck

standalone_healthcheck(prog_name="python -m wakedock.health")
