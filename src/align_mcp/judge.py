"""One judge call: render the prompt, call an OpenAI-compatible endpoint, parse and validate the verdict."""

from __future__ import annotations

import email.utils
import hashlib
import json
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from . import config
from .errors import InvalidInput, JudgeConfigError, JudgeUnreachable
from .models import JudgeSettings, Score, ScoreType

if TYPE_CHECKING:
    from openai import AsyncOpenAI

VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*)\s*\}\}")
ROOTS = ("inputs", "outputs", "reference_outputs", "metadata")
MAX_RETRY_AFTER_S = 60.0
MAX_PROMPT_CHARS = 200_000


# ---- prompt templates -------------------------------------------------------------------------------------


def default_prompt(score_type: ScoreType, feedback_key: str) -> str:
    """The shipped default template for a score type, with evaluator-level variables filled in."""
    text = _prompt_file(f"{score_type.kind}.md")
    replacements = {
        "feedback_key": feedback_key,
        "labels": ", ".join(score_type.labels or []),
        "min": str(score_type.min),
        "max": str(score_type.max),
    }
    for key, value in replacements.items():
        text = re.sub(r"\{\{\s*" + key + r"\s*\}\}", value.replace("\\", "\\\\"), text)
    return text


def _prompt_file(name: str) -> str:
    packaged = resources.files("align_mcp").joinpath("prompts", name)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    # Running from a source checkout: prompts/ sits at the repository root.
    return (Path(__file__).resolve().parents[2] / "prompts" / name).read_text(encoding="utf-8")


# The system message is the start of every request's shared prefix: constant, so providers cache it.
_PRINCIPLES = _prompt_file("judge_system.md").strip()
SYSTEM_PROMPT = (
    _PRINCIPLES
    + "\n\nReply with a single JSON object that matches the given schema: first `reasoning` (two to "
    "five sentences grounded in the example), then `score`. Output nothing else."
)
SYSTEM_PROMPT_NO_REASONING = (
    _PRINCIPLES + "\n\nReply with a single JSON object that matches the given schema, holding only `score`. "
    "Output nothing else."
)


def template_variables(template: str) -> list[str]:
    return [m.group(1) for m in VARIABLE.finditer(template)]


def validate_template(template: str) -> None:
    """Reject templates that reference unknown roots or never show the output being judged."""
    if not template.strip():
        raise InvalidInput("The prompt is empty. Write grading instructions that include {{outputs}}.")
    if len(template) > MAX_PROMPT_CHARS:
        raise InvalidInput(
            f"The prompt is {len(template):,} characters; a judge prompt may have at most {MAX_PROMPT_CHARS:,}. "
            "Keep the grading instructions and let {{inputs}} / {{outputs}} bring in each example."
        )
    variables = template_variables(template)
    unknown = sorted({v for v in variables if v.split(".")[0] not in ROOTS})
    if unknown:
        raise InvalidInput(
            f"Unknown template variable(s): {', '.join('{{' + v + '}}' for v in unknown)}. "
            "Use {{inputs}}, {{outputs}}, {{reference_outputs}}, {{metadata}} or dotted paths such as "
            "{{inputs.question}}."
        )
    if not any(v.split(".")[0] == "outputs" for v in variables):
        raise InvalidInput(
            "The prompt never shows the output being judged: add {{outputs}} (or a path such as "
            "{{outputs.answer}}) to the template."
        )


def _lookup(run: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    parts = path.split(".")
    value: Any = run.get(parts[0])
    for part in parts[1:]:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False)


def render(template: str, run: Mapping[str, Any]) -> str:
    """Fill {{inputs}}, {{outputs.answer}}, ... from a run dict; missing paths render as '(missing)'."""

    def fill(match: re.Match[str]) -> str:
        found, value = _lookup(run, match.group(1))
        return _show(value) if found else "(missing)"

    return VARIABLE.sub(fill, template)


def response_schema(score_type: ScoreType, reasoning: bool) -> dict[str, Any]:
    score: dict[str, Any]
    if score_type.kind == "categorical":
        score = {"type": "string", "enum": list(score_type.labels or [])}
    else:
        score = {"type": "integer", "enum": score_type.values()}
    properties: dict[str, Any] = {}
    if reasoning:
        properties["reasoning"] = {"type": "string", "description": "Why, grounded in the example"}
    properties["score"] = {**score, "description": score_type.describe()}
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "judgement",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": properties,
                "required": list(properties),
                "additionalProperties": False,
            },
        },
    }


def build_messages(template: str, run: Mapping[str, Any], reasoning: bool) -> list[dict[str, str]]:
    """A constant system message, then the rendered template: instructions first, the example last."""
    system = SYSTEM_PROMPT if reasoning else SYSTEM_PROMPT_NO_REASONING
    return [{"role": "system", "content": system}, {"role": "user", "content": render(template, run)}]


def cache_key(
    model: str, settings: JudgeSettings, messages: list[dict[str, str]], schema: dict[str, Any]
) -> str:
    """Identity of a judge call: any change to prompt, example, model or sampling settings misses the cache."""
    material = json.dumps(
        {
            "model": model,
            "temperature": settings.temperature,
            "max_tokens": settings.max_tokens,
            "messages": messages,
            "schema": schema,
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(material.encode()).hexdigest()


# ---- endpoint resolution ----------------------------------------------------------------------------------


API_KEY_ENV = re.compile(r"^[A-Z][A-Z0-9_]*_API_KEY$")


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
    if settings.api_key_env:
        import os

        if not API_KEY_ENV.match(settings.api_key_env):
            raise JudgeConfigError(
                f"api_key_env={settings.api_key_env!r} is not allowed: name a variable ending in _API_KEY (e.g. "
                "AZURE_OPENAI_API_KEY), so no other secret can be sent to a judge endpoint."
            )
        key = os.environ.get(settings.api_key_env)
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
    return Endpoint(base_url=base_url, api_key=key, model=model)


# ---- the call ---------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    score: Score | None
    reasoning: str | None
    error: str | None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    latency_ms: float | None = None
    calls: int = 0


def cache_row(key: str, verdict: Verdict) -> dict[str, Any]:
    """The judge-cache entry for a successful verdict (errors are never cached)."""
    from .store import dumps, now_iso

    return {
        "key": key,
        "judge_score": dumps(verdict.score),
        "reasoning": verdict.reasoning,
        "prompt_tokens": verdict.prompt_tokens,
        "completion_tokens": verdict.completion_tokens,
        "cached_tokens": verdict.cached_tokens,
        "created_at": now_iso(),
    }


class ReplyError(ValueError):
    """The judge replied, but not with a valid verdict."""


def parse_reply(content: str | None, score_type: ScoreType) -> tuple[Score, str | None]:
    if not content or not content.strip():
        raise ReplyError("empty reply")
    text = content.strip()
    if text.startswith("```"):
        text = re.sub(r"^```(?:json)?\s*|\s*```$", "", text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise ReplyError(f"reply is not JSON: {content[:120]!r}") from None
    if not isinstance(data, dict) or "score" not in data:
        raise ReplyError(f"reply has no `score` field: {content[:120]!r}")
    try:
        score = score_type.validate_score(data["score"])
    except InvalidInput as e:
        raise ReplyError(
            f"score {data['score']!r} is outside the score type ({score_type.describe()})"
        ) from e
    reasoning = data.get("reasoning")
    return score, reasoning if isinstance(reasoning, str) else None


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms` / `Retry-After` (delta seconds or an HTTP date)."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return None
        return max(0.0, parsed.timestamp() - time.time())


class Judge:
    """An async judge bound to one endpoint and settings; share one instance across an alignment run."""

    def __init__(self, endpoint: Endpoint, settings: JudgeSettings, score_type: ScoreType) -> None:
        from openai import AsyncOpenAI  # imported here: start-up never pays for the openai client

        self.endpoint = endpoint
        self.settings = settings
        self.score_type = score_type
        self.schema = response_schema(score_type, settings.reasoning)
        self.client: AsyncOpenAI = AsyncOpenAI(
            api_key=endpoint.api_key, base_url=endpoint.base_url, timeout=settings.timeout, max_retries=0
        )

    async def aclose(self) -> None:
        await self.client.close()

    async def __aenter__(self) -> Judge:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def judge(self, messages: list[dict[str, str]]) -> Verdict:
        """Judge one example. Transport failures retry with backoff; one re-ask on an unparseable reply."""
        started = time.perf_counter()
        total_calls = 0
        tokens = [0, 0, 0]
        convo = list(messages)
        problem = ""
        for attempt in range(2):
            content, usage, calls = await self._call(convo)
            total_calls += calls
            for i, value in enumerate(usage):
                tokens[i] += value
            try:
                score, reasoning = parse_reply(content, self.score_type)
            except ReplyError as e:
                problem = str(e)
                if attempt == 0:
                    convo = [
                        *messages,
                        {"role": "assistant", "content": content or ""},
                        {
                            "role": "user",
                            "content": f"That reply was invalid ({problem}). Reply again with only the JSON object "
                            "that matches the schema.",
                        },
                    ]
                continue
            return Verdict(
                score=score,
                reasoning=reasoning,
                error=None,
                prompt_tokens=tokens[0],
                completion_tokens=tokens[1],
                cached_tokens=tokens[2],
                latency_ms=(time.perf_counter() - started) * 1000,
                calls=total_calls,
            )
        return Verdict(
            score=None,
            reasoning=None,
            error=f"unparseable reply after a re-ask: {problem}",
            prompt_tokens=tokens[0],
            completion_tokens=tokens[1],
            cached_tokens=tokens[2],
            latency_ms=(time.perf_counter() - started) * 1000,
            calls=total_calls,
        )

    async def _call(self, messages: list[dict[str, str]]) -> tuple[str | None, tuple[int, int, int], int]:
        """One logical call with transport retries. Returns (content, (prompt, completion, cached) tokens, calls).

        Raises JudgeUnreachable / JudgeConfigError for failures that would hit every example alike, and
        _PerExampleFailure for those that concern this example only (recorded as its `error`).
        """
        import httpx2
        import openai
        from openai.types.chat import ChatCompletion

        kwargs: dict[str, Any] = {
            "model": self.endpoint.model,
            "messages": messages,
            "temperature": self.settings.temperature,
            "response_format": self.schema,
        }
        if self.settings.max_tokens is not None:
            kwargs["max_completion_tokens"] = self.settings.max_tokens
        attempts = self.settings.max_retries + 1
        calls = 0
        last_problem = ""
        for attempt in range(attempts):
            calls += 1
            wait: float | None = None
            try:
                # client.post skips the SDK's per-call TypedDict transform of the params (plain JSON here):
                # about 1 ms of CPU per request, which is most of the client's cost at high request rates.
                response = await self.client.post("/chat/completions", body=kwargs, cast_to=ChatCompletion)
            except openai.APITimeoutError:
                last_problem = f"timed out after {self.settings.timeout:g}s"
            except openai.APIConnectionError as e:
                # A dropped connection's cause often has an empty message (ReadError('')): name its type then.
                cause = e.__cause__ or e
                detail = str(cause) or type(cause).__name__
                last_problem = f"connection failed ({detail})"
                # Refused or unresolvable: nothing can be judged, so stop the run. A connection dropped
                # mid-reply concerns this request only: the example ends as an error and the run goes on.
                if attempt == attempts - 1 and isinstance(cause, httpx2.ConnectError):
                    raise JudgeUnreachable(
                        f"Cannot reach the judge at {self.endpoint.base_url}: {detail}. Check that the "
                        "server is running and the base URL is right; results so far are kept — resume the "
                        "alignment run to finish."
                    ) from e
            except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
                raise JudgeConfigError(
                    f"The judge at {self.endpoint.base_url} rejected the API key ({e.status_code}). Check "
                    f"OPENAI_API_KEY / {config.ENV_JUDGE_API_KEY}; results so far are kept."
                ) from e
            except openai.NotFoundError as e:
                raise JudgeConfigError(
                    f"The judge at {self.endpoint.base_url} answered 404 for model {self.endpoint.model!r}. Check "
                    f"the model name ({config.ENV_JUDGE_MODEL}) and the base URL (it usually ends in /v1)."
                ) from e
            except openai.APIStatusError as e:
                status = e.status_code
                if status == 429 or status >= 500 or status == 408:
                    last_problem = f"HTTP {status} from the judge"
                    wait = retry_after_seconds(e.response.headers)
                else:
                    raise _PerExampleFailure(f"HTTP {status} from the judge: {e.message}", calls) from e
            else:
                usage = response.usage
                cached = 0
                if usage is not None and usage.prompt_tokens_details is not None:
                    cached = usage.prompt_tokens_details.cached_tokens or 0
                content = response.choices[0].message.content if response.choices else None
                return (
                    content,
                    (usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0, cached),
                    calls,
                )
            if attempt < attempts - 1:
                if wait is None:
                    wait = min(8.0, 0.5 * 2**attempt) * (0.5 + random.random() / 2)
                await anyio.sleep(min(wait, MAX_RETRY_AFTER_S))
        raise _PerExampleFailure(
            f"{last_problem} (after {attempts} attempt{'s' if attempts > 1 else ''})", calls
        )


class _PerExampleFailure(Exception):
    def __init__(self, problem: str, calls: int) -> None:
        super().__init__(problem)
        self.problem = problem
        self.calls = calls


async def judge_example(judge: Judge, messages: list[dict[str, str]]) -> Verdict:
    """Judge one example; per-example failures become a Verdict with `error`, never an exception."""
    started = time.perf_counter()
    try:
        return await judge.judge(messages)
    except _PerExampleFailure as e:
        return Verdict(
            score=None,
            reasoning=None,
            error=e.problem,
            latency_ms=(time.perf_counter() - started) * 1000,
            calls=e.calls,
        )
