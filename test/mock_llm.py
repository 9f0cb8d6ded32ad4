#!/usr/bin/env python3
"""mock_llm.py — a language-model provider for duet_ask tests (python3 standard library only).

Listens on 127.0.0.1 on a random port (written to --port-file) and speaks both wire formats:
  POST <prefix>/chat/completions   OpenAI-compatible chat completions
  POST <prefix>/messages           Anthropic Messages API
The prefix (e.g. /p1/v1) names a provider, so one server plays several providers.

Answers and failures come from a JSON fixture file, re-read when it changes (tests rewrite it):
  {
    "default": "SELECT 1",
    "answers": {"<question>": ["<SQL of round 1>", "<SQL of round 2 (after a correction)>"],
                "<question>": {"/p2/v1": ["..."], "*": ["..."]}},
    "faults":  {"/p1/v1": ["429:1", "500", "ok"]}
  }
The question is the first user message; the round is 1 + the number of assistant messages.
Faults are consumed one per request to that prefix, in order, then requests succeed:
  429:<s>      429 with Retry-After: <s>          429ms:<ms>  429 with retry-after-ms
  <code>       that HTTP status with an error body (500, 529, 400, 401, 404, ...)
  timeout      no answer for 60 s                  slow       200, then one byte per second
  error200     200 carrying an error object        malformed  200 with a body that is not JSON
  empty        200 with no choices / no content    echo_key   500 whose body repeats the key
  ok           a normal answer
Every request is appended to --log as one JSON line (path, headers, body, fault, time).
GET /_reset clears the fault counters.
"""
import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATE = {"mtime": None, "fixtures": {}, "consumed": {}}


def fixtures(path):
    with LOCK:
        try:
            st = os.stat(path)
            mtime = (st.st_mtime_ns, st.st_ino, st.st_size)  # a rename gives a new inode
        except FileNotFoundError:
            return {}
        if mtime != STATE["mtime"]:
            with open(path, encoding="utf-8") as f:
                STATE["fixtures"] = json.load(f)
            STATE["mtime"] = mtime
            STATE["consumed"] = {}
        return STATE["fixtures"]


def next_fault(fx, prefix):
    with LOCK:
        faults = fx.get("faults", {}).get(prefix, [])
        n = STATE["consumed"].get(prefix, 0)
        STATE["consumed"][prefix] = n + 1
        return str(faults[n]) if n < len(faults) else "ok"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet; requests go to the JSON log
        pass

    def send(self, status, body, headers=None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/_reset":
            with LOCK:
                STATE["consumed"] = {}
            self.send(200, {"reset": True})
        else:
            self.send(404, {"error": {"message": "not found"}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        if self.path.endswith("/chat/completions"):
            kind, prefix = "openai", self.path[: -len("/chat/completions")]
        elif self.path.endswith("/messages"):
            kind, prefix = "anthropic", self.path[: -len("/messages")]
        else:
            self.send(404, {"error": {"message": "unknown endpoint " + self.path}})
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self.send(400, {"error": {"message": "request is not JSON"}})
            return
        msgs = body.get("messages", [])
        question = next((m["content"] for m in msgs if m.get("role") == "user"), "")
        rnd = 1 + sum(1 for m in msgs if m.get("role") == "assistant")
        fx = fixtures(self.server.fixture_path)
        fault = next_fault(fx, prefix)
        with LOCK, open(self.server.log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps({"t": time.time(), "path": self.path, "prefix": prefix, "kind": kind,
                                  "headers": {k.lower(): v for k, v in self.headers.items()},
                                  "body": body, "question": question, "round": rnd,
                                  "fault": fault}) + "\n")
        self.answer(kind, prefix, question, rnd, fault, fx)

    def answer(self, kind, prefix, question, rnd, fault, fx):
        err = {"error": {"type": "mock_error", "message": "injected " + fault}}
        if kind == "anthropic":
            err = {"type": "error", "error": {"type": "overloaded_error", "message": "injected " + fault}}
        if fault.startswith("429ms:"):
            return self.send(429, err, {"retry-after-ms": fault.split(":", 1)[1]})
        if fault.startswith("429:"):
            return self.send(429, err, {"Retry-After": fault.split(":", 1)[1]})
        if fault.isdigit():
            return self.send(int(fault), err)
        if fault == "timeout":
            time.sleep(60)
            return
        if fault == "slow":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(60):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(1)
            return
        if fault == "error200":
            return self.send(200, err)
        if fault == "malformed":
            return self.send(200, b'{"choices": [ {"message": ')
        if fault == "echo_key":
            seen = self.headers.get("Authorization", "") + self.headers.get("x-api-key", "")
            return self.send(500, {"error": {"message": "bad credentials " + seen}})
        if fault == "empty":
            return self.send(200, {"choices": []} if kind == "openai"
                             else {"type": "message", "content": [], "usage": {}})
        answers = fx.get("answers", {}).get(question)
        if isinstance(answers, dict):
            answers = answers.get(prefix, answers.get("*"))
        if not answers:
            answers = [fx.get("default", "SELECT 1")]
        sql = answers[min(rnd, len(answers)) - 1]
        if kind == "openai":
            return self.send(200, {"id": "mock", "object": "chat.completion",
                                   "choices": [{"index": 0, "finish_reason": "stop",
                                                "message": {"role": "assistant", "content": sql}}],
                                   "usage": {"prompt_tokens": 100 + rnd, "completion_tokens": 10}})
        return self.send(200, {"id": "mock", "type": "message", "role": "assistant",
                               "content": [{"type": "text", "text": sql}],
                               "usage": {"input_tokens": 200 + rnd, "output_tokens": 20}})


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--fixtures", required=True)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.fixture_path = args.fixtures
    server.log_path = args.log
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)  # readers never see a partial port
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
