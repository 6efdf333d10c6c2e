"""WakeDock configuration: one validated Settings model (`settings.py`) made of sections
(`sections.py`), loaded from YAML, the environment and secret files (`loading.py`), with the
rules on where secrets may come from (`secret_origin.py`)."""

from wakedock.config.checks import SECRET_REF_PREFIX
from wakedock.config.loading import ConfigError, load_settings, read_yaml
from wakedock.config.secret_origin import (
    SECRET_FIELDS,
    SECRET_LISTS,
    env_name,
    plain_secrets,
    secret_origin,
)
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
from wakedock.config.settings import ENV_PREFIX, FILE_SUFFIX, Settings
from wakedock.config.zerotrust import ZeroTrustSettings

__all__ = [
    "ENV_PREFIX",
    "FILE_SUFFIX",
    "SECRET_FIELDS",
    "SECRET_LISTS",
    "SECRET_REF_PREFIX",
    "AlertSettings",
    "AuditSettings",
    "AuthSettings",
    "ConfigError",
    "DatabaseSettings",
    "DockerSettings",
    "EdgeSettings",
    "HttpSettings",
    "MfaSettings",
    "ProxySettings",
    "RateLimitSettings",
    "SecretsSettings",
    "ServerSettings",
    "Settings",
    "SiemSettings",
    "ZeroTrustSettings",
    "env_name",
    "load_settings",
    "plain_secrets",
    "read_yaml",
    "secret_origin",
]
