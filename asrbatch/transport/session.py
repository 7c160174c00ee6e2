"""The HTTP session (default timeouts, TLS, Gradio login) and the classification of failures.

Everything requests can raise or answer is turned here into one of the
asrbatch errors, so the protocol modules and the retry policy only ever see
:class:`RetryableError` (worth another try) or a final :class:`AsrbatchError`.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from dataclasses import dataclass
from typing import Any

import requests
import urllib3.exceptions

from asrbatch.config import ServerConfig
from asrbatch.errors import (
    AsrbatchError,
    EndpointError,
    InputRejectedError,
    RecognitionError,
    TransientError,
)
from asrbatch.log import kv

log = logging.getLogger(__name__)

USER_AGENT = "asrbatch"
LOGIN_ROUTES = ("/login", "/gradio_api/login")
"""Measured: /login at the root on 3.50, 4.44 and 6.31 (not under the 5+ api_prefix); the prefixed
route is tried only if the root one is missing."""


# A server's message is taken as the recording's fault only when it is about the audio and says
# nothing of the server's own trouble; anything else, or nothing at all, is the server's.
_INPUT_FAULT = re.compile(
    r"decod|invalid data|not (?:an? )?(?:audio|sound|media)|unsupported (?:audio|codec|format|file|media)"
    r"|unknown (?:format|codec)|format not (?:recogni[sz]ed|supported)|could not (?:read|open|parse) (?:the )?"
    r"(?:audio|file|input)|no audio|empty (?:audio|file|input)|too (?:short|long|large|big)|file size"
    r"|max(?:imum)?[ _](?:file[ _])?size|corrupt|truncat|moov atom|no (?:audio )?stream|sample rate",
    re.IGNORECASE,
)
_SERVER_FAULT = re.compile(
    r"\b(?:cuda|out of memory|oom|memory|gpu|device|internal|timeout|timed out|connection|worker|killed|busy"
    r"|overloaded|overload|unavailable|traceback|runtime ?error|nccl|cudnn|segmentation fault|disk|space left"
    r"|permission denied|model (?:not|failed|error))\b",
    re.IGNORECASE,
)


def blames_input(message: str) -> bool:
    """True when a server's error *message* is about the recording rather than the server."""
    return bool(_INPUT_FAULT.search(message)) and not _SERVER_FAULT.search(message)


def server_failure(message: str | None, what: str, *, status: int | None = None) -> AsrbatchError:
    """What a failure the server reported means, given its *message* (None when it gave none).

    The recording's fault (:class:`InputRejectedError`) only when the message is about the
    audio; otherwise the server's, retried (:class:`RetryableError`).
    """
    message = (message or "").strip()
    if message and blames_input(message):
        return InputRejectedError(f"server rejected the file: {message}")
    where = f"HTTP {status} on {what}" if status else what
    if message:
        return RetryableError(f"server failed ({where}): {message}", reason=str(status or "server error"))
    return RetryableError(
        f"server failed without saying why ({where})",
        reason=str(status or "server error"),
        hint="the server's log may tell; Gradio passes on the message of a gr.Error, and of any other "
             "error only when the app is launched with show_error=True",
    )


class RetryableError(TransientError):
    """A transient failure with a short ``reason`` for the retry log (``503``, ``read timeout``...)."""

    def __init__(self, message: str, *, reason: str, unreachable: bool = False, hint: str | None = None) -> None:
        super().__init__(message, unreachable=unreachable, hint=hint)
        self.reason = reason


class LoginExpiredError(EndpointError):
    """The server answered 401 to a request made with a login cookie (e.g. after a restart)."""


class QueueRequired(EndpointError):
    """The function must be called through the server's queue: the route tried cannot give its
    result (REST closed by ``api_open=False``, no ``/call`` before Gradio 4.20, a generator's first
    partial only) or its error message (``/call`` hiding it).  Never leaves the client, which calls
    the function through the queue from then on."""


@dataclass(frozen=True)
class Timeouts:
    """Limits for one recognition, grown with the audio's duration."""

    connect: float
    read: float
    deadline: float

    @classmethod
    def for_audio(cls, settings: ServerConfig, seconds: float | None) -> Timeouts:
        extra = settings.read_timeout_per_audio_second * max(seconds or 0.0, 0.0)
        return cls(settings.connect_timeout, settings.read_timeout + extra, settings.deadline + extra)

    @property
    def pair(self) -> tuple[float, float]:
        return (self.connect, self.read)


class TimeoutSession(requests.Session):
    """A session whose requests all have a ``(connect, read)`` timeout unless given one.

    Each request also carries the session's ``verify`` itself: requests lets
    ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` replace a session's ``verify=False`` or CA file,
    so ``server.verify_tls`` would be ignored on hosts that set them.
    """

    def __init__(self, timeout: tuple[float, float]) -> None:
        super().__init__()
        self.default_timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        if kwargs.get("verify") is None and self.verify is not True:
            kwargs["verify"] = self.verify
        return super().request(method, url, *args, **kwargs)


def build_session(settings: ServerConfig) -> TimeoutSession:
    """A session for *settings*: default timeouts, TLS verification, user agent."""
    session = TimeoutSession((settings.connect_timeout, settings.read_timeout))
    session.verify = settings.verify_tls
    if settings.verify_tls is False:
        # Chosen in the configuration: no warning per request (cron would mail each one).
        warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
    session.headers["User-Agent"] = USER_AGENT
    return session


def join(base: str, route: str) -> str:
    return base.rstrip("/") + "/" + route.lstrip("/")


# ---------------------------------------------------------------------------------------------
# Classification


def classify_exception(exc: requests.RequestException, what: str) -> AsrbatchError:
    """The asrbatch error for a requests exception raised by *what* (``POST /upload``)."""
    if isinstance(exc, requests.exceptions.SSLError):
        return EndpointError(
            f"TLS failure on {what}: {_short(exc)}",
            hint="set server.verify_tls to the server's CA bundle, or false to skip verification",
        )
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return RetryableError(f"connect timeout on {what}", reason="connect timeout", unreachable=True)
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return RetryableError(f"read timeout on {what}", reason="read timeout")
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return RetryableError(f"connection closed mid-response on {what}", reason="closed mid-response")
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema)):
        return EndpointError(f"invalid server URL for {what}: {exc}", hint="check server.url")
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = str(exc)
        if "refused" in text.lower():
            return RetryableError(f"connection refused on {what}", reason="connection refused", unreachable=True)
        if "Name or service not known" in text or "nodename nor servname" in text or "resolve" in text.lower():
            return RetryableError(f"host name not resolved on {what}", reason="name not resolved", unreachable=True)
        # "Connection aborted": reset or closed before any status line arrived.
        return RetryableError(f"connection reset on {what}: {_short(exc)}", reason="connection reset", unreachable=True)
    return RecognitionError(f"request failed on {what}: {_short(exc)}")


def classify_status(response: requests.Response, what: str, *, max_file_size: int | None = None) -> AsrbatchError:
    """The asrbatch error for a non-2xx *response* that the protocol module did not handle itself."""
    status = response.status_code
    detail = error_detail(response)
    suffix = f": {detail}" if detail else ""
    if status == 429:
        # The server is up but refuses work: a run should pause, not blame the file.
        return RetryableError(f"HTTP 429 too many requests on {what}", reason="429", unreachable=True)
    if status in (502, 503, 504):
        return RetryableError(f"HTTP {status} on {what}", reason=str(status), unreachable=True)
    if status == 401:
        return LoginExpiredError(
            f"HTTP 401 on {what}: the server requires a login",
            hint="set server.username and the password variable (server.password_env)",
        )
    if status == 403:
        return EndpointError(f"HTTP 403 forbidden on {what}{suffix}", hint="check the server's access rules")
    if status == 404:
        return EndpointError(f"HTTP 404 on {what}: the route does not exist on this server", hint="check server.url")
    if status == 413:
        limit = f" of {max_file_size} bytes" if max_file_size else ""
        return InputRejectedError(
            f"file larger than the server's max upload size{limit} (HTTP 413){suffix}",
            hint="split or compress the recording, or raise the server's max_file_size",
        )
    if status == 408:
        return RetryableError(f"HTTP 408 request timeout on {what}", reason="408")
    if 400 <= status < 500:
        return InputRejectedError(f"server rejected the request with HTTP {status} on {what}{suffix}")
    return server_failure(detail or None, what, status=status)


def uploaded_path(response: requests.Response, what: str) -> str:
    """The server's path of the file a Gradio ``POST /upload`` took (its answer: a JSON list of paths)."""
    try:
        paths = response.json()
    except ValueError:
        raise RecognitionError(f"server answered {what} with something that is not JSON") from None
    if not isinstance(paths, list) or not paths or not isinstance(paths[0], str):
        raise EndpointError(f"server answered {what} with {str(paths)[:100]!r}, not a list of paths")
    return paths[0]


def error_detail(response: requests.Response, limit: int = 200) -> str:
    """A short message from an error body (JSON ``detail``/``error`` or text), '' when none."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip() if response.content else ""
        if text.lower() in ("internal server error", "not found"):
            return ""
        return text[:limit]
    if isinstance(body, dict):
        for key in ("error", "detail", "message"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("error") or value.get("message")
            if isinstance(value, str) and value:
                return value[:limit]
        return ""
    if isinstance(body, str):
        return body[:limit]
    return ""


def unquote(message: str) -> str:
    """A Gradio error message without the quotes ``str(gr.Error("msg"))`` puts around it (3.x, 4.x)."""
    message = message.strip()
    if len(message) >= 2 and message[0] == message[-1] and message[0] in "'\"":
        return message[1:-1]
    return message


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:197] + "..."


# ---------------------------------------------------------------------------------------------
# Login


def login(session: requests.Session, settings: ServerConfig, timeouts: tuple[float, float]) -> None:
    """Log in with the Gradio login form; the session keeps the cookie.

    Raises :class:`EndpointError` when the credentials are refused or no login
    route exists, :class:`RetryableError` for transient failures.  The password
    never appears in any message.
    """
    username = settings.username or ""
    if settings.password is None:
        raise EndpointError(
            f"the server requires a login for user {username!r} but no password is set",
            hint=f"set the password variable {settings.password_env}",
        )
    form = {"username": username, "password": settings.password}
    for route in LOGIN_ROUTES:
        url = join(settings.url, route)
        what = f"POST {route}"
        try:
            response = session.post(url, data=form, timeout=timeouts, allow_redirects=False)
        except requests.RequestException as exc:
            raise classify_exception(exc, what) from None
        if response.status_code == 404:
            continue
        if response.status_code in (200, 302, 303):
            body = _json_or_none(response)
            if isinstance(body, dict) and body.get("success") is False:
                raise _refused(settings, response)
            log.debug(kv("login", url=settings.url, user=username))
            return
        if response.status_code in (400, 401, 403):
            raise _refused(settings, response)
        raise classify_status(response, what)
    raise EndpointError(
        f"the server at {settings.url} requires a login but has no login route ({', '.join(LOGIN_ROUTES)})",
        hint="check server.url",
    )


def _refused(settings: ServerConfig, response: requests.Response) -> EndpointError:
    detail = error_detail(response) or f"HTTP {response.status_code}"
    return EndpointError(
        f"login refused for user {settings.username!r} at {settings.url}: {detail}",
        hint=f"check server.username and the password in {settings.password_env}",
    )


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except (ValueError, json.JSONDecodeError):
        return None
