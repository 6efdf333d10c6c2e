"""Integration tests: real external components (Docker, PostgreSQL, Redis, OpenBao, servers)."""
