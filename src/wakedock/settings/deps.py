"""What the settings route asks for (see web/provided.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from wakedock.settings.service import EffectiveSettings
from wakedock.web.provided import provider

effective_settings = provider(EffectiveSettings)
EffectiveSettingsDep = Annotated[EffectiveSettings, Depends(effective_settings)]
