"""Backup and restore of an installation: the database, the audit chain and its keys."""
