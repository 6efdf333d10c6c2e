"""The effective configuration, read-only and without secrets (GET /api/v1/settings)."""
