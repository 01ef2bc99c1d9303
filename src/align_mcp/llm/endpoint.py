"""Where a model is called: the endpoint, model and key resolved from the evaluator and the environment."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from align_mcp import config
from align_mcp.core.models import JudgeSettings, api_key_env_problem
from align_mcp.errors import JudgeConfigError


def _norm(url: str) -> str:
    return url.rstrip("/").lower()


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    api_key: str
    model: str

    def __repr__(self) -> str:  # never show the key
        return f"Endpoint(base_url={self.base_url!r}, model={self.model!r})"


def resolve_endpoint(settings: JudgeSettings, env: config.Settings | None = None) -> Endpoint:
    """Where and with what the judge is called; raises JudgeConfigError naming the variable to set."""
    env = env or config.load()
    model = settings.model or env.judge_model
    if not model:
        raise JudgeConfigError(
            f"No judge model is configured. Set {config.ENV_JUDGE_MODEL} (e.g. gpt-4.1-mini, or the model name your "
            "Ollama/vLLM server serves) or give the evaluator a model."
        )
    base_url = settings.base_url or env.effective_base_url
    _check_base_url(base_url, None if settings.base_url else env.judge_base_url_var)
    key_var = env.judge_api_key_var
    if settings.api_key_env:
        if (problem := api_key_env_problem(settings.api_key_env)) is not None:
            raise JudgeConfigError(problem)
        key_var = settings.api_key_env
        key = config.read_api_key(key_var)
        if not key:
            raise JudgeConfigError(
                f"The evaluator reads its judge API key from {settings.api_key_env}, which is not set. "
                f"Set {settings.api_key_env}, or clear the evaluator's api_key_env."
            )
    elif settings.base_url and _norm(settings.base_url) != _norm(env.effective_base_url):
        # The environment's key belongs to the environment's endpoint: an evaluator pointing elsewhere must
        # name its own key variable, so an edited base URL can never carry that key to another host.
        key = None
        if _norm(base_url) == _norm(config.DEFAULT_OPENAI_BASE_URL):
            raise JudgeConfigError(
                f"The evaluator points at {base_url} but names no key: set its api_key_env (e.g. OPENAI_API_KEY)."
            )
    else:
        key = env.judge_api_key
    if not key:
        if base_url.rstrip("/") == config.DEFAULT_OPENAI_BASE_URL:
            raise JudgeConfigError(
                "No API key for the judge at https://api.openai.com/v1. Set OPENAI_API_KEY (or "
                f"{config.ENV_JUDGE_API_KEY}), or point {config.ENV_JUDGE_BASE_URL} / OPENAI_BASE_URL at an "
                "OpenAI-compatible server such as Ollama (http://localhost:11434/v1)."
            )
        key = "not-needed"  # local servers (Ollama, vLLM, llama.cpp) accept any key
    elif (problem := config.api_key_problem(key)) is not None:
        raise JudgeConfigError(
            f"{key_var or 'The judge API key'} {problem}, so it cannot be sent in an HTTP header. Set "
            f"{key_var or 'it'} again to the key alone."
        )
    return Endpoint(base_url=base_url, api_key=key, model=model)


def _check_base_url(url: str, variable: str | None) -> None:
    """Refuse a base URL that is not an absolute http(s) URL, naming where it came from (the environment
    `variable`, or the evaluator's setting when None) and a likely fix."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return
    source = f"{variable}={url!r}" if variable else f"The evaluator's base_url {url!r}"
    fix = f" (e.g. http://{url})" if "://" not in url else ""
    raise JudgeConfigError(
        f"{source} is not an http:// or https:// URL, so no judge can be called at it. Start it with http:// or "
        f"https://{fix}."
    )
