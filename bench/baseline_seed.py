"""The seed's way of transcribing a folder, re-expressed as the benchmark's baseline.

One recording at a time, whole and unconverted, and wait: for each recording under INPUT_DIR
in path order, read the whole file into memory, send it to the recognition function, wait for
the text, write ``OUTPUT_DIR/<path>.txt``.  On Gradio 4 and later the bytes are uploaded
(``POST {prefix}/upload``) and the function called (``POST {prefix}/call/recognize``, then its
result stream read to the end); on Gradio 3 they go as a base64 data URL in one
``POST /api/predict/`` with ``fn_index`` 0, as the seed did.  No conversion, no ledger, no
concurrency, no retries: the benchmark measures the happy path.  Standard library and requests
only, so its cost is its own.

    python bench/baseline_seed.py INPUT_DIR OUTPUT_DIR --url http://127.0.0.1:7860
"""

from __future__ import annotations

import argparse
import base64
import json
import mimetypes
import os
import sys
import time
from pathlib import Path
from typing import Any

import requests

EXTENSIONS = {"wav", "mp3", "flac", "m4a", "ogg", "aac", "opus", "wma", "amr", "webm", "mp4", "mkv", "mov"}
TIMEOUT = (10, 600)


def recordings(root: Path) -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and name.rsplit(".", 1)[-1].lower() in EXTENSIONS:
                found.append(Path(folder) / name)
    return sorted(found)


def recognize(session: requests.Session, url: str, config: dict[str, Any], path: Path) -> str:
    data = path.read_bytes()  # the whole file, as it is
    if "protocol" not in config:  # Gradio 3.x: the seed's data-URL POST
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        encoded = {"name": path.name, "data": f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"}
        response = session.post(url + "/api/predict/", json={"data": [None, encoded, 1, ""], "fn_index": 0},
                                timeout=TIMEOUT)
        response.raise_for_status()
        return str(response.json()["data"][0])
    prefix = str(config.get("api_prefix") or "")
    response = session.post(url + prefix + "/upload", files={"files": (path.name, data)}, timeout=TIMEOUT)
    response.raise_for_status()
    audio = {"path": response.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}
    response = session.post(url + prefix + "/call/recognize", json={"data": [None, audio, 1, ""]}, timeout=TIMEOUT)
    response.raise_for_status()
    event_id = response.json()["event_id"]
    with session.get(f"{url}{prefix}/call/recognize/{event_id}", stream=True, timeout=TIMEOUT) as stream:
        stream.raise_for_status()
        event = None
        for line in stream.iter_lines(decode_unicode=True):
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                payload = json.loads(line.split(":", 1)[1])
                if event == "error":
                    raise RuntimeError(f"{path.name}: server error {payload}")
                return str(payload[0])
    raise RuntimeError(f"{path.name}: the result stream ended without a result")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input_dir", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--url", required=True)
    options = parser.parse_args()
    url = options.url.rstrip("/")
    started = time.monotonic()
    done = 0
    with requests.Session() as session:
        config = session.get(url + "/config", timeout=TIMEOUT).json()
        for path in recordings(options.input_dir):
            text = recognize(session, url, config, path)
            target = options.output_dir / path.relative_to(options.input_dir).with_suffix(".txt")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text + "\n", encoding="utf-8")
            done += 1
    print(f"baseline: {done} recordings in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
