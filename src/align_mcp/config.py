"""Settings read from the environment (names are a contract, see DESIGN.md)."""

from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import dataclass
from pathlib import Path

ENV_DB = "ALIGN_MCP_DB"
ENV_JUDGE_MODEL = "ALIGN_MCP_JUDGE_MODEL"
ENV_JUDGE_BASE_URL = "ALIGN_MCP_JUDGE_BASE_URL"
ENV_JUDGE_API_KEY = "ALIGN_MCP_JUDGE_API_KEY"
ENV_CONCURRENCY = "ALIGN_MCP_CONCURRENCY"
ENV_TOKEN = "ALIGN_MCP_TOKEN"
ENV_IMPORT_ROOT = "ALIGN_MCP_IMPORT_ROOT"
ENV_TOOLS = "ALIGN_MCP_TOOLS"
ENV_PRICES = "ALIGN_MCP_PRICES"
DEFAULT_TOOLS = "core"
DEFAULT_CONCURRENCY = 8
DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"


def default_db_path() -> Path:
    """The store under the user's data directory (e.g. ~/.local/share/align-mcp/align.db)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("align-mcp", appauthor=False)) / "align.db"


@dataclass(frozen=True)
class Settings:
    """A snapshot of the environment; read afresh by `load()` so tests and long-lived servers see changes."""

    db_path: Path
    judge_model: str | None
    judge_base_url: str | None
    judge_api_key: str | None
    judge_base_url_var: str | None
    judge_api_key_var: str | None
    concurrency: int

    @property
    def effective_base_url(self) -> str:
        return self.judge_base_url or DEFAULT_OPENAI_BASE_URL


def tool_selection() -> list[str]:
    """The names in ALIGN_MCP_TOOLS (toolsets or tools, comma-separated), or the default `core`.

    Which names exist is the MCP server's to check: it lists the tools.
    """
    raw = os.environ.get(ENV_TOOLS, "")
    names = [name.strip() for name in raw.split(",") if name.strip()]
    return names or [DEFAULT_TOOLS]


def _first(*names: str, strip: bool = False) -> tuple[str | None, str | None]:
    for name in names:
        value = os.environ.get(name)
        if value and strip:
            value = value.strip()
        if value:
            return value, name
    return None, None


def read_api_key(name: str) -> str | None:
    """The API key in environment variable `name`, without surrounding whitespace (a pasted key often ends in
    a newline); None when unset or blank."""
    return (os.environ.get(name) or "").strip() or None


def api_key_problem(key: str) -> str | None:
    """Why `key` cannot be sent in an HTTP header (a control or non-ASCII character, and where), or None.

    The answer never quotes the key or any part of it.
    """
    for i, ch in enumerate(key, start=1):
        if not " " <= ch <= "~":
            kind = "a non-ASCII character" if ord(ch) > 127 else "a control character"
            return f"contains {kind} (at position {i} of {len(key)})"
    return None


def load() -> Settings:
    """Read the settings from the environment."""
    db = os.environ.get(ENV_DB)
    base_url, base_var = _first(ENV_JUDGE_BASE_URL, "OPENAI_BASE_URL")
    api_key, key_var = _first(ENV_JUDGE_API_KEY, "OPENAI_API_KEY", strip=True)
    raw_conc = os.environ.get(ENV_CONCURRENCY)
    try:
        concurrency = int(raw_conc) if raw_conc else DEFAULT_CONCURRENCY
    except ValueError:
        from align_mcp.errors import InvalidInput

        raise InvalidInput(f"{ENV_CONCURRENCY}={raw_conc!r} is not an integer; set it to e.g. 8.") from None
    if concurrency < 1:
        from align_mcp.errors import InvalidInput

        raise InvalidInput(f"{ENV_CONCURRENCY}={concurrency} must be at least 1.")
    return Settings(
        db_path=Path(db).expanduser() if db else default_db_path(),
        judge_model=os.environ.get(ENV_JUDGE_MODEL) or None,
        judge_base_url=base_url,
        judge_api_key=api_key,
        judge_base_url_var=base_var,
        judge_api_key_var=key_var,
        concurrency=concurrency,
    )


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def refuse_open_bind(host: str, token: str | None, what: str, credential: str) -> None:
    """Refuse to serve `what` on an address other machines can reach unless ALIGN_MCP_TOKEN guards it."""
    if not is_loopback(host) and not token:
        from align_mcp.errors import InvalidInput

        raise InvalidInput(
            f"Refusing to serve {what} on {host}: an address other machines can reach needs {credential}. Set "
            f"{ENV_TOKEN} to a long random secret (e.g. `openssl rand -hex 32`), or bind 127.0.0.1."
        )


# ---- model prices -----------------------------------------------------------------------------------------

PRICE_FIELDS = ("input", "cached_input", "output")


@dataclass(frozen=True)
class Price:
    """A model's price in US dollars per million tokens (cached input: None means the input price)."""

    input: float
    cached_input: float | None
    output: float


def default_prices_path() -> Path:
    """The prices file under the user's config directory (e.g. ~/.config/align-mcp/prices.toml)."""
    import platformdirs

    return Path(platformdirs.user_config_dir("align-mcp", appauthor=False)) / "prices.toml"


def prices_path() -> Path:
    """The prices file: ALIGN_MCP_PRICES when set, else the default path."""
    named = os.environ.get(ENV_PRICES)
    return Path(named).expanduser() if named else default_prices_path()


def load_prices(path: Path | None = None) -> dict[str, Price]:
    """Model prices by model name from a TOML file (default: `prices_path()`); {} when the default file does not
    exist. The file holds one table per model, in US dollars per million tokens:

        [models."gpt-4.1-mini"]
        input = 0.40
        cached_input = 0.10   # optional; the input price when omitted
        output = 1.60

    A file that cannot be read or does not say prices this way raises InvalidInput naming the file and the key.
    """
    import tomllib

    from align_mcp.errors import InvalidInput

    explicit = path is not None or bool(os.environ.get(ENV_PRICES))
    path = path or prices_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if not explicit:
            return {}
        raise InvalidInput(
            f"The prices file {path} does not exist. Create it, or unset {ENV_PRICES} to use "
            f"{default_prices_path()}."
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"The prices file {path} cannot be read: {e}.") from e
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InvalidInput(f"The prices file {path} is not valid TOML: {e}. Fix that line.") from e
    unknown = sorted(set(data) - {"models"})
    models = data.get("models", {})
    if unknown or not isinstance(models, dict):
        what = f"top-level key(s) {', '.join(unknown)}" if unknown else "`models`, which is not a table"
        raise InvalidInput(
            f'The prices file {path} has {what}. Write one [models."NAME"] table per model with input, '
            "output and optionally cached_input, in USD per million tokens."
        )
    prices: dict[str, Price] = {}
    for name, entry in models.items():
        where = f'[models."{name}"]'
        if not isinstance(entry, dict):
            raise InvalidInput(
                f"The prices file {path}: {where} is not a table; give it input, output and optionally "
                "cached_input, in USD per million tokens."
            )
        extra = sorted(set(entry) - set(PRICE_FIELDS))
        if extra:
            raise InvalidInput(
                f"The prices file {path}: {where} has unknown key(s) {', '.join(extra)}; the keys are "
                f"{', '.join(PRICE_FIELDS)}."
            )
        values: dict[str, float | None] = {}
        for field in PRICE_FIELDS:
            value = entry.get(field)
            if value is None and field != "cached_input":
                raise InvalidInput(
                    f"The prices file {path}: {where} has no {field}; set it in USD per million tokens."
                )
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf
            ):
                raise InvalidInput(
                    f"The prices file {path}: {where} {field} = {value!r} is not a number ≥ 0 (USD per "
                    "million tokens)."
                )
            values[field] = None if value is None else float(value)
        prices[name] = Price(
            input=values["input"] or 0.0, cached_input=values["cached_input"], output=values["output"] or 0.0
        )
    return prices
