"""The fresh-code form that a zero-trust step-up brings a browser to, shared by the admin
host's pages (`mfa/step_up_page.py`) and a service host's way in (`proxy/handoff.py`): the
code checked by MFA's own step-up (rate limited, a replayed code refused, audited
`mfa_step_up` or `mfa_failure`), and what the page says otherwise."""

from __future__ import annotations

from fastapi import Request

from wakedock.auth.forms import BrowserSession
from wakedock.auth.hashing import run_hashing
from wakedock.context import RequestContext
from wakedock.errors import TooManyAttempts
from wakedock.mfa.errors import MfaCodeRejected
from wakedock.mfa.service import MfaService

TITLE = "Confirm it is you"
NO_SECOND_FACTOR = (
    "The access policy asks for a code from an authenticator app before you continue, and "
    "your account has none. Enrol one on your account page, or ask an administrator."
)


async def check_fresh_code(
    request: Request,
    mfa: MfaService,
    session: BrowserSession,
    fields: dict[str, str],
    context: RequestContext,
) -> tuple[str, int] | None:
    """None when the form's code is accepted (the session's MFA time is now), else what to
    say and the status."""
    code = fields.get("code", "").strip()[:32]
    try:
        # A backup code is checked with argon2: on the hashing threads, as sign-in does.
        await run_hashing(request, mfa.step_up, session.principal, code, context)
    except MfaCodeRejected:
        return "That code was not accepted. Try the current one.", 400
    except TooManyAttempts as exc:
        return f"Too many codes tried. Wait {exc.retry_after} seconds and try again.", 429
    return None
