#!/usr/bin/env python3
"""Self-test of herald-load's parsers and loss accounting against a deliberately awkward fake
server (loopback only, a few seconds). Usage: bench/selftest.py [path/to/herald-load]

The fake server answers publishes with 201 and sends every event to each SSE subscriber with
chunked transfer encoding in 1-7 byte chunks, CRLF line ends, comments, an `event:` field, a
multi-line JSON data value with the keys reordered and spaced, drops seq 3 and repeats seq 5.
Long-poll subscribers get a Content-Length JSON body in herald's shape, split across writes.
Expected: per subscriber one lost and one duplicate delivery, nothing else wrong.
"""
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TOOL = sys.argv[1] if len(sys.argv) > 1 else next(
    (p for p in (os.path.join(ROOT, "build", "release", "bench", "herald-load"),
                 os.path.join(ROOT, "build", "bench", "herald-load")) if os.path.exists(p)),
    "herald-load")
EVENTS = 20
SUBS = 5

lock = threading.Lock()
streams = []  # sockets of SSE subscribers
history = []  # (id, body bytes)
waiters = []  # (sock, since) long-pollers


def send_chunked(sock, data):
    i = 0
    while i < len(data):
        n = random.randint(1, 7)
        piece = data[i:i + n]
        sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        i += n


def sse_frame(eid, body):
    obj = json.loads(body)
    if obj["seq"] == 3:
        return b""  # dropped
    text = json.dumps({"pad": obj["pad"], "seq": obj["seq"], "t": obj["t"]}, indent=1)
    data = b"".join(b"data: " + line.encode() + b"\r\n" for line in text.split("\n"))
    frame = b": comment\r\nid: %d\r\nevent: bench\r\n" % eid + data + b"\r\n"
    return frame * (2 if obj["seq"] == 5 else 1)


def lp_answer(sock, since):
    events = [{"id": str(i), "topic": "x", "type": "message", "data": json.loads(b)}
              for i, b in history if i > since]
    nxt = events[-1]["id"] if events else str(since)
    body = json.dumps({"events": events, "next": nxt, "truncated": False}).encode()
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nETag: \"%s\"\r\n"
            b"Content-Length: %d\r\n\r\n" % (nxt.encode(), len(body)))
    whole = head + body
    for i in range(0, len(whole), 97):
        sock.sendall(whole[i:i + 97])


def handle(sock):
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            d = sock.recv(65536)
            if not d:
                return
            buf += d
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        method, path, _ = lines[0].split(" ")
        hdrs = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
        if method == "POST":
            n = int(hdrs.get("content-length", "0"))
            while len(buf) < n:
                buf += sock.recv(65536)
            body, buf = buf[:n], buf[n:]
            with lock:
                eid = len(history) + 1
                history.append((eid, body))
                frame = sse_frame(eid, body)
                for s in streams:
                    send_chunked(s, frame)
                ready = [w for w in waiters]
                waiters.clear()
                for s, since in ready:
                    lp_answer(s, since)
            resp = b'{"id":"%d"}' % eid
            sock.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n" % len(resp) + resp)
        elif path.endswith("/stream"):
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            with lock:
                send_chunked(sock, b": hello\r\nretry: 3000\r\n\r\n")
                streams.append(sock)
            return
        else:
            since = int(path.split("since=")[1].split("&")[0])
            with lock:
                if any(i > since for i, _ in history):
                    lp_answer(sock, since)
                else:
                    waiters.append((sock, since))


def serve(ls):
    while True:
        s, _ = ls.accept()
        threading.Thread(target=handle, args=(s,), daemon=True).start()


def main():
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(128)
    port = ls.getsockname()[1]
    threading.Thread(target=serve, args=(ls,), daemon=True).start()
    ok = True
    for mode, lost, dups in (("sse", SUBS, SUBS), ("longpoll", 0, 0)):
        out = subprocess.run([TOOL, mode, "--port", str(port), "-n", str(SUBS), "-m", str(EVENTS),
                              "--drain", "1", "--timeout", "30", "--topic", "x"],
                             capture_output=True, text=True, timeout=60)
        r = json.loads(out.stdout)
        want = {"deliveries": EVENTS * SUBS - lost + dups, "loss": lost, "duplicates": dups,
                "connect_failures": 0, "protocol_errors": 0, "unknown_seq": 0}
        bad = {k: (r[k], v) for k, v in want.items() if r[k] != v}
        print(f"{mode}: {'ok' if not bad else 'FAILED ' + str(bad)}")
        if bad:
            print(out.stdout, out.stderr)
            ok = False
        with lock:
            history.clear()
            streams.clear()
    print("1 passed, 0 failed" if ok else "0 passed, 1 failed")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
