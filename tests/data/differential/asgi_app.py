"""The ASGI upstream of the differential test (tests/e2e/differential.rs), run by
hypercorn: it answers every request 200 with the path it was asked for, and appends
one JSON line per request to the file named by $VT_LOG, so the test can see exactly
which paths (decoded `path` and undecoded `raw_path`), which identity header and which
HTTP version reached the application, through whatever protocol hypercorn accepted
(HTTP/1.1, or HTTP/2 after an h2c upgrade)."""

import json
import os

LOG = os.environ["VT_LOG"]


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    headers = {}
    for name, value in scope["headers"]:
        headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    line = {
        "path": scope["path"],
        "raw_path": scope.get("raw_path", b"").decode("latin-1"),
        "query": scope["query_string"].decode("latin-1"),
        "http_version": scope["http_version"],
        "remote_user": headers.get("remote-user", []),
    }
    with open(LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/plain; charset=utf-8")],
    })
    await send({"type": "http.response.body", "body": scope["path"].encode("utf-8", "replace")})
