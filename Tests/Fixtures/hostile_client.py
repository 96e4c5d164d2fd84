#!/usr/bin/env python3
"""A hostile client of ferryd's control socket, for the hostile-load tests.

Run as the user it plays (runuser). Every loop is bounded in count and time, and it
stops by itself. It prints one JSON object describing what the agent did.

  hostile_client.py SOCKET slow-headers N HOLD
      Opens N connections, sends half a request's headers on each, and waits up to
      HOLD seconds. Reports how many were refused at once (503 BUSY), and after how
      many seconds the agent closed each of the others.

  hostile_client.py SOCKET silent-streams N HOLD [GO]
      Opens N event streams (GET /v1/events), reads the head of each answer, and then
      reads nothing more until the file GO exists (or, without GO, for HOLD seconds; HOLD
      bounds the wait either way); then reads each stream to its end (at most 60 s each).
      Reports each stream's status and whether its last line says the agent closed it
      (streamClosed).

Once its connections are open (and, for streams, each answer's head has come), it
writes the line "ready" to standard error.
"""
import json
import os
import select
import socket
import sys
import time


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def slow_headers(path, count, hold):
    sockets = []
    refused = 0
    refusal = ""
    for _ in range(count):
        s = connect(path)
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        sockets.append(s)
    announce_ready()
    start = time.monotonic()
    open_ = {s: None for s in sockets}
    closed_after = []
    while open_ and time.monotonic() - start < hold:
        ready, _, _ = select.select(list(open_), [], [], 0.1)
        for s in ready:
            data = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            elapsed = time.monotonic() - start
            if data.startswith(b"HTTP/1.1 503"):
                refused += 1
                refusal = data.decode("utf-8", "replace")
            else:
                closed_after.append(round(elapsed, 2))
            del open_[s]
            s.close()
    still_open = len(open_)
    for s in open_:
        s.close()
    print(json.dumps({"opened": count, "refused": refused, "refusal": refusal,
                      "closedAfter": sorted(closed_after), "stillOpen": still_open}))


def read_head(s, timeout):
    """Reads until the end of an answer's head; returns what was read (maybe more)."""
    s.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, OSError):
        pass
    return data


def silent_streams(path, count, hold, go=None):
    streams = []
    for _ in range(count):
        s = connect(path)
        s.sendall(b"GET /v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        streams.append(s)
    heads = [read_head(s, 30) for s in streams]
    announce_ready()
    start = time.monotonic()
    while time.monotonic() - start < hold and not (go and os.path.exists(go)):
        time.sleep(0.05)
    results = []
    for s, head in zip(streams, heads):
        # To the stream's end (the connection closes, or the last chunk came), however long
        # the agent takes to write what it still holds; a stream that never ends is given up
        # after 60 s.
        data = head
        deadline = time.monotonic() + 60
        end = "last chunk"
        try:
            while not data.endswith(b"\r\n0\r\n\r\n"):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    end = "60 s"
                    break
                s.settimeout(remaining)
                chunk = s.recv(1 << 20)
                if not chunk:
                    end = "closed"
                    break
                data += chunk
        except (socket.timeout, OSError) as error:
            end = repr(error)
        s.close()
        head, _, body = data.partition(b"\r\n\r\n")
        status = head.split(b" ")[1].decode() if head.startswith(b"HTTP/1.1 ") else "none"
        lines = [line for line in body.split(b"\n") if line.startswith(b"{")]
        last = json.loads(lines[-1]) if lines else {}
        results.append({"status": status, "lines": len(lines), "lastKind": last.get("kind", ""), "end": end,
                        "tail": data[-120:].decode("utf-8", "replace"),
                        "body": body[:300].decode("utf-8", "replace") if status != "200" else ""})
    print(json.dumps({"streams": results}))


def announce_ready():
    print("ready", file=sys.stderr, flush=True)


def main():
    path, mode, count, hold = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    count = min(count, 2000)
    hold = min(hold, 120)
    if mode == "silent-streams":
        silent_streams(path, count, hold, sys.argv[5] if len(sys.argv) > 5 else None)
    else:
        slow_headers(path, count, hold)


if __name__ == "__main__":
    main()
