"""The one Settings model: every section, with defaults that are safe as they are."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from wakedock.config.sections import (
    AlertSettings,
    AuditSettings,
    AuthSettings,
    DatabaseSettings,
    DockerSettings,
    EdgeSettings,
    HttpSettings,
    MfaSettings,
    ProxySettings,
    RateLimitSettings,
    SecretsSettings,
    ServerSettings,
    SiemSettings,
)
from wakedock.config.zerotrust import ZeroTrustSettings

ENV_PREFIX = "WAKEDOCK_"
FILE_SUFFIX = "_FILE"


class Settings(BaseSettings):
    """Everything WakeDock can be told. Secrets are SecretStr and never printed."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    environment: Literal["production", "development"] = "production"
    data_dir: Path = Field(default_factory=lambda: Path.home() / ".wakedock")
    server: ServerSettings = Field(default_factory=ServerSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    mfa: MfaSettings = Field(default_factory=MfaSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    docker: DockerSettings = Field(default_factory=DockerSettings)
    proxy: ProxySettings = Field(default_factory=ProxySettings)
    edge: EdgeSettings = Field(default_factory=EdgeSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    siem: SiemSettings = Field(default_factory=SiemSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    zerotrust: ZeroTrustSettings = Field(default_factory=ZeroTrustSettings)

    def database_url(self) -> str:
        if self.database.url is not None:
            return self.database.url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'wakedock.db'}"
