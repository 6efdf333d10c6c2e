"""What audit handlers and guards ask for (see web/provided.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.service import Auditor
from wakedock.web.provided import provider

auditor = provider(Auditor)
AuditorDep = Annotated[Auditor, Depends(auditor)]
session_factory = provider(sessionmaker)
SessionFactoryDep = Annotated[sessionmaker[Session], Depends(session_factory)]
