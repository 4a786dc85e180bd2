"""A local OpenAI-compatible chat server for the LLM tests: each POST gets the next scripted action."""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER = "a red striped midi dress, flowing silhouette, cotton, studio photograph, full body"


class ScriptedServer(ThreadingHTTPServer):
    """Answers each POST with the next scripted action; records every request."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ChatHandler)
        self.script: list[tuple[Any, ...]] = []
        self.requests: list[dict[str, Any]] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out closed its socket: expected in the time-out case


class ChatHandler(BaseHTTPRequestHandler):
    server: ScriptedServer

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.requests.append(
            {"path": self.path, "headers": headers, "body": body, "at": time.monotonic()}
        )
        kind, *args = self.server.script.pop(0) if self.server.script else ("ok", ANSWER)
        if kind == "sleep":
            time.sleep(args[0])
            kind, args = "ok", [ANSWER]
        if kind == "status":
            error = {"error": {"message": f"scripted {args[0]}", "type": "server_error", "code": None}}
            headers = args[1] if len(args) > 1 else {"Retry-After-Ms": "10"}
            self._send(args[0], json.dumps(error).encode(), headers)
        elif kind == "malformed":
            self._send(200, b'{"id": "chatcmpl-1", "choices": [{"index": 0, "mess')
        else:
            reply = {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "m"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": args[0]},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
            self._send(200, json.dumps(reply).encode())
