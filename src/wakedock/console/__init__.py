"""The admin console (`/admin`): users and roles, sessions, the audit trail, security posture,
secrets and settings, in the browser, on the dashboard's foundation (docs/console.md)."""
