"""The dashboard: the HTML pages of the people who run services (the services page, sign-out),
and the CSP report endpoint that counts what a browser refused to run on any admin page.

Pages are server-rendered (web/templating.py) with one small script of WakeDock's own
(`/assets/wakedock.js`): live state by short polling, actions without a reload. Every rule
(permissions, ownership, the wake decision, audit) is the one the API and the proxy apply.
"""
