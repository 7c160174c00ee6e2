"""Record every attempt of this Python process to reach a host other than this machine.

Put this folder on ``PYTHONPATH`` and set ``ASRBATCH_NETWORK_AUDIT`` to a file: Python imports
``sitecustomize`` at start-up, and the audit hook below appends one line per name lookup or
connection aimed beyond loopback (``getaddrinfo example.org 443``, ``connect 203.0.113.5 80``).
An empty file afterwards means the process tried no network, whatever library it went through
(urllib, requests, httpx, sockets), as long as the attempt was made from Python code.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from typing import Any

_LOG = os.environ.get("ASRBATCH_NETWORK_AUDIT")
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


def _is_local(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if not isinstance(host, str):
        return True  # AF_UNIX paths and the like
    name = host.strip("[]").lower()
    if name in _LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(name.split("%")[0])
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _record(line: str) -> None:
    assert _LOG is not None
    with open(_LOG, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def _hook(event: str, arguments: tuple[Any, ...]) -> None:
    if event == "socket.getaddrinfo":
        host, port = arguments[0], arguments[1]
        if not _is_local(host):
            _record(f"getaddrinfo {host} {port}")
    elif event in ("socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr"):
        if not _is_local(arguments[0]):
            _record(f"{event.split('.')[1]} {arguments[0]}")
    elif event in ("socket.connect", "socket.sendto"):
        address = arguments[1] if event == "socket.connect" else arguments[-1]
        if isinstance(address, tuple) and address and not _is_local(address[0]):
            _record(f"{event.split('.')[1]} {address[0]} {address[1] if len(address) > 1 else ''}".rstrip())


if _LOG:
    sys.addaudithook(_hook)
