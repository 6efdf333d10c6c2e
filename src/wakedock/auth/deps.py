"""What handlers ask for from the identity primitives (see web/provided.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from wakedock.auth.csrf import CsrfGuard
from wakedock.auth.sessions import SessionStore
from wakedock.auth.tokens import TokenCodec
from wakedock.web.provided import provider

session_store = provider(SessionStore)
SessionStoreDep = Annotated[SessionStore, Depends(session_store)]
token_codec = provider(TokenCodec)
TokenCodecDep = Annotated[TokenCodec, Depends(token_codec)]
csrf_guard = provider(CsrfGuard)
CsrfGuardDep = Annotated[CsrfGuard, Depends(csrf_guard)]
