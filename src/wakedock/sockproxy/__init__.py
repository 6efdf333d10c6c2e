"""`wakedock socket-proxy`: the only holder of the Docker socket, a filtering Engine API proxy.

WakeDock talks to the engine through it: only the endpoints WakeDock uses (`routes.py`), only on
workloads carrying its labels, and every create checked by the launch policy (`create_check.py`,
`service_check.py`) before it reaches the engine. See docs/socket-proxy.md.
"""
