"""A client of `charlm serve`'s `/stream`: one text as the server generates it (`charlm generate --server`). A
refusal (400, 503) or a stream that ends in an error is a CharlmError in the server's words."""

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from charlm.errors import CharlmError
from charlm.serving.stream import STREAM_PATH


def stream_text(server: str, row: dict[str, Any], timeout_s: float = 120) -> Iterator[str]:
    """The text generated for `row` (a prompt and any sampling options), a piece at a time."""
    url = server.rstrip("/") + STREAM_PATH
    body = json.dumps({"inputs": [row]}).encode()
    post = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        response = urllib.request.urlopen(post, timeout=timeout_s)
    except urllib.error.HTTPError as err:
        answer = json.loads(err.read() or b"{}").get("message", err.reason)
        retry = f" (retry after {err.headers['Retry-After']} s)" if err.headers.get("Retry-After") else ""
        raise CharlmError(f"{url}: {err.code}: {answer}{retry}") from None
    except OSError as err:
        raise CharlmError(f"{url}: cannot reach the server ({getattr(err, 'reason', err)})") from None
    with response:
        name = "text"
        for raw in response:
            line = raw.decode("utf-8").rstrip("\n")
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
                if name == "error":
                    raise CharlmError(f"{url}: {data['message']}")
                if name == "done":
                    return
                yield data["text"]
                name = "text"
    raise CharlmError(f"{url}: the stream ended before its last event")
