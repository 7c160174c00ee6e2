"""A self-signed certificate for 127.0.0.1, made with the openssl CLI as server images ship one."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """``(certificate, key)`` in *folder*, valid for two days for ``127.0.0.1``.

    Raises RuntimeError when the openssl command is missing (``apt-get install openssl``).
    """
    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl command is needed: apt-get install openssl")
    folder.mkdir(parents=True, exist_ok=True)
    certificate, key = folder / "server.crt", folder / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(certificate)],
        check=True, capture_output=True,
    )  # fmt: skip
    return certificate, key
