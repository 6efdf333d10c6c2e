"""The real Docker engine for the integration tests: the engine, a user-defined bridge network
per test, a per-test installation and the Python test app (tests/support/engine.py). A module
that drives the engine through an in-process app also imports `database_url` and `h` from there.
"""

from support.engine import add_app, engine, installation, network, python_image

__all__ = ["add_app", "engine", "installation", "network", "python_image"]
