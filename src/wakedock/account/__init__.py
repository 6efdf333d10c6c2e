"""The signed-in user's Account page: their sessions, their second factor, their password.

An HTML face over the same rules as the API (users/sessions.py, mfa/service.py,
login/password.py): the same audit events, rate limits and permissions.
"""
