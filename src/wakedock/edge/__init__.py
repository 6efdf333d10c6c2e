"""The edge: nginx + ModSecurity + OWASP CRS in front of WakeDock, rendered and supervised by it."""
