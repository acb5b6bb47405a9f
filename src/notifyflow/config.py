"""Settings (DESIGN §6), read once from the environment.

Never imported by workflow code: the starter passes what a workflow needs in its input.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

_ISO_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(value: object) -> timedelta:
    """Seconds (``90``, ``"1.5"``) or an ISO 8601 duration (``PT30M``, ``P1DT2H``)."""
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        result = timedelta(seconds=value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            result = timedelta(seconds=float(text))
        except ValueError:
            match = _ISO_DURATION.match(text.upper())
            if not match or text.upper() in {"P", "PT"} or text.upper().endswith("T"):
                raise ValueError(
                    f"{value!r} is not a duration: use seconds (3600) or ISO 8601 (PT1H)"
                ) from None
            parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
            result = timedelta(
                days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"]
            )
    else:
        raise ValueError(f"{value!r} is not a duration")
    if result <= timedelta(0):
        raise ValueError("a duration must be positive")
    return result


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _strip_slash(url: str) -> str:
    return url.rstrip("/")


Url = Annotated[str, AfterValidator(_strip_slash)]

_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?P<port>\d{1,5})$")


def _host_port(value: str) -> str:
    """``HOST:PORT`` (``127.0.0.1:9464``, ``0.0.0.0:9464``, ``[::1]:9464``, ``worker:9464``)."""
    text = value.strip()
    match = _HOST_PORT.match(text)
    if not match or not 0 < int(match["port"]) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT, e.g. 127.0.0.1:9464")
    return text


HostPort = Annotated[str, AfterValidator(_host_port)]

DEFAULT_STATE_DIR = Path(".notifyflow")


class Settings(BaseSettings):
    """Every environment variable of the contract; unknown variables are ignored."""

    # An empty variable counts as unset, so compose files can pass `${VAR:-}` through.
    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", case_sensitive=False, env_ignore_empty=True
    )

    database_url: str = Field(
        default=f"sqlite+aiosqlite:///{(DEFAULT_STATE_DIR / 'notifyflow.db').resolve()}",
        validation_alias="DATABASE_URL",
    )
    temporal_address: str = Field(default="127.0.0.1:7233", validation_alias="TEMPORAL_ADDRESS")
    temporal_namespace: str = Field(default="default", validation_alias="TEMPORAL_NAMESPACE")
    temporal_task_queue: str = Field(default="notifyflow", validation_alias="TEMPORAL_TASK_QUEUE")
    temporal_api_key: SecretStr | None = Field(default=None, validation_alias="TEMPORAL_API_KEY")

    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    openai_base_url: Url | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    classify_model: str = Field(default="gpt-4.1", validation_alias="NOTIFYFLOW_CLASSIFY_MODEL")
    localize_model: str = Field(
        default="gpt-4.1-mini", validation_alias="NOTIFYFLOW_LOCALIZE_MODEL"
    )
    compose_model: str = Field(default="gpt-4.1-mini", validation_alias="NOTIFYFLOW_COMPOSE_MODEL")
    ai: Literal["openai", "offline"] | None = Field(default=None, validation_alias="NOTIFYFLOW_AI")

    twilio_account_sid: str | None = Field(default=None, validation_alias="TWILIO_ACCOUNT_SID")
    twilio_auth_token: SecretStr | None = Field(default=None, validation_alias="TWILIO_AUTH_TOKEN")
    twilio_api_base_url: Url = Field(
        default="https://api.twilio.com", validation_alias="TWILIO_API_BASE_URL"
    )
    twilio_messaging_service_sid: str | None = Field(
        default=None, validation_alias="TWILIO_MESSAGING_SERVICE_SID"
    )
    instagram_graph_base_url: Url = Field(
        default="https://graph.facebook.com/v21.0", validation_alias="INSTAGRAM_GRAPH_BASE_URL"
    )
    # The Page access token the Graph API sends with (an addition to DESIGN §6: without it
    # no Instagram message can be sent).
    instagram_page_access_token: SecretStr | None = Field(
        default=None, validation_alias="INSTAGRAM_PAGE_ACCESS_TOKEN"
    )
    channel: Literal["twilio", "console"] | None = Field(
        default=None, validation_alias="NOTIFYFLOW_CHANNEL"
    )
    public_url: Url = Field(
        default="http://127.0.0.1:8000", validation_alias="NOTIFYFLOW_PUBLIC_URL"
    )
    api_token: SecretStr | None = Field(default=None, validation_alias="NOTIFYFLOW_API_TOKEN")
    # The Temporal SDK's Prometheus endpoint: the worker serves it there, the API's /metrics
    # appends what it serves (docs/operations.md).
    worker_metrics_address: HostPort | None = Field(
        default=None, validation_alias="NOTIFYFLOW_WORKER_METRICS_ADDRESS"
    )

    # Open notifications a worker keeps in memory (the SDK's sticky cache). One costs about
    # 115 KB; past the cache a notification is evicted and replayed from its history when it
    # next wakes (an answer, a reminder): memory against a little CPU per wake-up. 600 keeps a
    # worker under 250 MB whatever is open (docs/performance.md).
    worker_cached_workflows: int = Field(
        default=600, ge=1, validation_alias="NOTIFYFLOW_WORKER_CACHED_WORKFLOWS"
    )

    # A pooled PostgreSQL connection idle this long is pinged before use (0: at every use, as
    # SQLAlchemy's pool_pre_ping). A busy worker takes a connection back within milliseconds,
    # and a ping per statement was half of its round trips; the record of messages a provider
    # just accepted is always pinged (db/session.py).
    db_ping_after_idle_seconds: float = Field(
        default=1.0, ge=0, validation_alias="NOTIFYFLOW_DB_PING_AFTER_IDLE_SECONDS"
    )

    # Every worker's sweeper (sweeper.py) looks this often for recorded notifications and
    # corrections whose workflow did not start (Temporal away, the API died between its two
    # steps), and leaves rows younger than the grace to the request still starting them.
    # Starting is idempotent, so a short grace only means more work, never a second ask.
    sweep_every_seconds: float = Field(
        default=10.0, gt=0, validation_alias="NOTIFYFLOW_SWEEP_EVERY_SECONDS"
    )
    sweep_grace_seconds: float = Field(
        default=10.0, ge=0, validation_alias="NOTIFYFLOW_SWEEP_GRACE_SECONDS"
    )

    @property
    def sweep_grace(self) -> timedelta:
        """NOTIFYFLOW_SWEEP_GRACE_SECONDS as a duration."""
        return timedelta(seconds=self.sweep_grace_seconds)

    # The Nexus endpoint Voyager workflows call (it targets TEMPORAL_NAMESPACE and
    # TEMPORAL_TASK_QUEUE); `make run`, the tests and compose create it.
    nexus_endpoint: str = Field(default="notifyflow", validation_alias="NOTIFYFLOW_NEXUS_ENDPOINT")

    # Webhook receivers on private or loopback addresses (tests, internal networks); the
    # link-local range is refused whatever this says.
    webhook_allow_private: bool = Field(
        default=False, validation_alias="NOTIFYFLOW_WEBHOOK_ALLOW_PRIVATE"
    )

    remind_after: Duration = Field(
        default=timedelta(minutes=30), validation_alias="NOTIFYFLOW_REMIND_AFTER"
    )
    escalate_after: Duration = Field(
        default=timedelta(hours=2), validation_alias="NOTIFYFLOW_ESCALATE_AFTER"
    )
    auto_close_after: Duration = Field(
        default=timedelta(hours=24), validation_alias="NOTIFYFLOW_AUTO_CLOSE_AFTER"
    )

    @property
    def ai_provider(self) -> Literal["openai", "offline"]:
        if self.ai is not None:
            return self.ai
        return "openai" if self.openai_api_key else "offline"

    @property
    def channel_provider(self) -> Literal["twilio", "console"]:
        if self.channel is not None:
            return self.channel
        return "twilio" if self.twilio_account_sid and self.twilio_auth_token else "console"

    def check_consistency(self) -> None:
        """Cross-field rules; raise SettingsError naming the variable."""
        if self.ai_provider == "openai" and not self.openai_api_key:
            raise SettingsError("OPENAI_API_KEY: required when NOTIFYFLOW_AI=openai")
        if self.channel_provider == "twilio" and not (
            self.twilio_account_sid and self.twilio_auth_token
        ):
            raise SettingsError(
                "TWILIO_ACCOUNT_SID: TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are required "
                "when NOTIFYFLOW_CHANNEL=twilio"
            )
        if not (self.remind_after < self.escalate_after < self.auto_close_after):
            raise SettingsError(
                "NOTIFYFLOW_ESCALATE_AFTER: timers must grow: NOTIFYFLOW_REMIND_AFTER < "
                "NOTIFYFLOW_ESCALATE_AFTER < NOTIFYFLOW_AUTO_CLOSE_AFTER"
            )


class SettingsError(Exception):
    """A bad or missing setting; the message is one line that names the variable."""


_ALIASES = {name: f.validation_alias for name, f in Settings.model_fields.items()}


def load_settings(*, check: bool = True) -> Settings:
    """Read and check the environment, turning any problem into one SettingsError line.

    ``check=False`` skips the cross-field rules (credentials for the chosen providers), for
    commands that only need the database, such as ``notifyflow db upgrade``."""
    try:
        settings = Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        variable = _ALIASES.get(field) or field.upper()
        message = str(err["msg"]).removeprefix("Value error, ")
        raise SettingsError(f"{variable}: {message}") from None
    if check:
        settings.check_consistency()
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use."""
    return load_settings()
