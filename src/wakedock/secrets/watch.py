"""Reading secrets again while WakeDock runs (S9.2, S9.3).

A background thread, every `secrets.refresh_seconds`:
- follows the JWT signing key source (a new version is signed with at once, expired ones are
  retired) and rotates the key when its scheduled interval has passed;
- reads the version metadata of each `secret:` reference of the settings (Vault only; not the
  value); a new KV version is logged, and audited by the first process to notice it (every
  worker of a server, and every replica, runs this thread: cluster/claims.py).
  Settings other than the signing key (database and Redis URLs, the MFA and audit chain keys)
  take the new value at the next restart: those keys protect data already written, and the
  connections are made at start-up. Service secrets are read at every container start anyway.
A backend that is down is retried with exponential backoff; meanwhile the values read before
are served from memory and the health endpoint says `degraded`.
"""

from __future__ import annotations

import logging
import random
import threading

from sqlalchemy.orm import Session, sessionmaker

from wakedock.audit.events import Event, EventType
from wakedock.audit.service import record_event
from wakedock.clock import Clock
from wakedock.cluster.claims import claim_first
from wakedock.context import RequestContext
from wakedock.db import transaction
from wakedock.errors import WakeDockError
from wakedock.secrets.base import SecretProvider
from wakedock.secrets.providers import WithFallback, vault_of
from wakedock.secrets.rotation import AUDITED_ONCE, JwtKeys

log = logging.getLogger(__name__)
SCHEDULER = RequestContext(actor="system:secrets")
MAX_BACKOFF = 300.0


class SecretWatcher:
    def __init__(
        self,
        jwt_keys: JwtKeys,
        provider: SecretProvider | None,
        references: dict[str, tuple[str, str]],
        versions: dict[str, int | None],
        factory: sessionmaker[Session],
        clock: Clock,
        *,
        interval: float,
    ) -> None:
        self._jwt = jwt_keys
        self._provider = provider
        self._references = references
        self._versions = dict(versions)
        self._factory = factory
        self._clock = clock
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="secrets refresh", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)

    def tick(self) -> None:
        """One pass (raises the first backend error after trying everything)."""
        failure: Exception | None = None
        try:
            self._jwt.tick(SCHEDULER)
        except (WakeDockError, ValueError, OSError) as exc:
            failure = exc
        if isinstance(self._provider, WithFallback) and not self._provider.probe():
            failure = failure or RuntimeError("Vault is still unavailable: using the fallback")
        vault = vault_of(self._provider)
        for setting, (path, _key) in sorted(self._references.items()):
            if vault is None:
                break  # env and file values are read again at restart only
            try:
                # Only the version metadata: the value is not needed (it applies at restart),
                # so no secret value is read here.
                live = [v.version for v in vault.versions(path) if v.live]
            except WakeDockError as exc:
                failure = failure or exc
                continue
            newest = max(live, default=None)
            if newest is None or newest == self._versions.get(setting):
                continue
            self._versions[setting] = newest
            source = f"vault:{path} (v{newest})"
            log.warning("%s has a new version (%s): it is used after a restart", setting, source)
            details = {"action": "noticed", "source": source, "applied": "at restart"}
            event = Event(EventType.SECRET_ROTATION, target=setting, details=details)
            self._audit_once(f"audit:{setting}:noticed:{source}", event)
        if failure is not None:
            raise failure

    def _audit_once(self, key: str, event: Event) -> None:
        """Record `event` unless another process recorded the same change first."""
        now = self._clock.now()
        with transaction(self._factory) as db:
            if claim_first(db, key, now + AUDITED_ONCE, now=now):
                record_event(db, event, SCHEDULER, at=now)

    def _run(self) -> None:
        failures = 0
        while not self._stop.wait(self._delay(failures)):
            try:
                self.tick()
                failures = 0
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any backend error
                failures += 1
                log.warning("secrets refresh failed (%s); retrying with backoff", exc)

    def _delay(self, failures: int) -> float:
        if failures == 0:
            return self._interval
        delay: float = min(MAX_BACKOFF, self._interval * 2.0 ** min(failures, 16))
        return max(self._interval, delay * random.uniform(0.8, 1.2))  # noqa: S311 - jitter
