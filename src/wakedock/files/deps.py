"""What the files routes ask for (see web/provided.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from wakedock.files.store import FileStore
from wakedock.web.provided import provider

file_store = provider(FileStore)
FileStoreDep = Annotated[FileStore, Depends(file_store)]
