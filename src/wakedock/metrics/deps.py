"""What the metrics route asks for (see web/provided.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from wakedock.metrics.service import Metrics
from wakedock.web.provided import provider

metrics = provider(Metrics)
MetricsDep = Annotated[Metrics, Depends(metrics)]
