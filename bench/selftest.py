#!/usr/bin/env python3
"""Self-test of herald-load's parsers and loss accounting against a deliberately awkward fake
server (loopback only, a few seconds). Usage: bench/selftest.py [path/to/herald-load]

The fake server answers publishes with 201 and sends every event to each SSE subscriber with
chunked transfer encoding in 1-7 byte chunks, CRLF line ends, comments, an `event:` field, a
multi-line JSON data value with the keys reordered and spaced, drops seq 3 and repeats seq 5.
Long-poll subscribers get a Content-Length JSON body in herald's shape, split across writes.
WebSocket subscribers (raw mode, the JSON protocol, and permessage-deflate) get every message
in 1-7 byte writes, fragmented into up to three frames with a ping between fragments, with
7-, 16- and 64-bit lengths (one message is over 64 KiB), dropping seq 3 and repeating seq 5;
the JSON protocol's subscribe frame must arrive masked and is answered with "subscribed".
Expected: per subscriber one lost and one duplicate delivery (SSE, WebSocket), nothing else
wrong, and every ping answered with a pong.
"""
import base64
import hashlib
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

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
wsocks = []  # (sock, mode) WebSocket subscribers; mode: "raw", "json" or "deflate"
pings = {"sent": 0, "pongs": 0}


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


def ws_frame(fin, opcode, payload, rsv1=False):
    n = len(payload)
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    if n < 126:
        head = struct.pack("!BB", b0, n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 126, n)
    else:
        head = struct.pack("!BBQ", b0, 127, n)
    return head + payload


def ws_message(eid, body, mode):
    """Frames for one event: fragmented, a ping between the fragments, drop 3, repeat 5."""
    obj = json.loads(body)
    if obj["seq"] == 3:
        return b""
    if mode == "json":
        text = json.dumps({"op": "event", "topic": "x", "id": str(eid), "type": "message",
                           "time": "2026-12-03T15:00:00.123Z",
                           "data": {"pad": obj["pad"], "seq": obj["seq"], "t": obj["t"]}})
    else:
        text = json.dumps({"seq": obj["seq"], "pad": obj["pad"], "t": obj["t"]},
                          indent=1 if obj["seq"] % 2 else None)
    if obj["seq"] == 7:
        text = text[:-1] + " " * 70000 + "}"  # a 64-bit length
    elif obj["seq"] % 3 == 1:
        text = text[:-1] + " " * 200 + "}"  # 16-bit lengths
    payload = text.encode()
    rsv1 = False
    if mode == "deflate":
        z = zlib.compressobj(wbits=-15)
        payload = z.compress(payload) + z.flush(zlib.Z_SYNC_FLUSH)
        assert payload.endswith(b"\x00\x00\xff\xff")
        payload = payload[:-4]
        rsv1 = True
    cuts = sorted(random.sample(range(1, len(payload)), 2)) if len(payload) > 3 else []
    parts = [payload[a:b] for a, b in zip([0] + cuts, cuts + [len(payload)])]
    out = b""
    for i, part in enumerate(parts):
        out += ws_frame(i == len(parts) - 1, 0x1 if i == 0 else 0x0, part, rsv1 and i == 0)
        if i == 0:
            out += ws_frame(True, 0x9, b"p%d" % eid)
    copies = 2 if obj["seq"] == 5 else 1
    pings["sent"] += copies
    return out * copies


def ws_read_frame(sock, buf):
    """One client frame (must be masked): (opcode, payload, rest of buf)."""
    while len(buf) < 2:
        buf += sock.recv(65536)
    assert buf[1] & 0x80, "client frame not masked"
    n, off = buf[1] & 0x7f, 2
    if n == 126:
        while len(buf) < 4:
            buf += sock.recv(65536)
        n, off = struct.unpack("!H", buf[2:4])[0], 4
    while len(buf) < off + 4 + n:
        buf += sock.recv(65536)
    mask = buf[off:off + 4]
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(buf[off + 4:off + 4 + n]))
    return buf[0] & 0x0f, payload, buf[off + 4 + n:]


def ws_pong_reader(sock, buf):
    try:
        while True:
            op, payload, buf = ws_read_frame(sock, buf)
            if op == 0xA:
                with lock:
                    pings["pongs"] += 1
    except Exception:
        pass


def ws_accept(sock, path, hdrs, buf):
    key = hdrs["sec-websocket-key"]
    accept = base64.b64encode(hashlib.sha1(
        (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
    deflate = "permessage-deflate" in hdrs.get("sec-websocket-extensions", "")
    mode = "json" if path == "/v1/ws" else "deflate" if deflate else "raw"
    head = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n")
    if deflate:
        head += (b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
                 b"client_no_context_takeover\r\n")
    if mode == "json":
        head += b"Sec-WebSocket-Protocol: herald.v1\r\n"
    sock.sendall(head + b"\r\n")
    if mode == "json":
        op, payload, buf = ws_read_frame(sock, buf)
        req = json.loads(payload)
        assert op == 1 and req["op"] == "subscribe" and req["topic"] == "x", req
        sock.sendall(ws_frame(True, 1, json.dumps(
            {"op": "subscribed", "topic": "x", "ref": req.get("ref"), "next": "0"}).encode()))
    with lock:
        wsocks.append((sock, mode))
    ws_pong_reader(sock, buf)


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
                for s, mode in wsocks:
                    frames = ws_message(eid, body, mode)
                    i = 0
                    while i < len(frames):
                        n = random.randint(1, 7) if len(frames) < 4096 else 4096
                        s.sendall(frames[i:i + n])
                        i += n
                ready = [w for w in waiters]
                waiters.clear()
                for s, since in ready:
                    lp_answer(s, since)
            resp = b'{"id":"%d"}' % eid
            sock.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n" % len(resp) + resp)
        elif hdrs.get("upgrade", "").lower() == "websocket":
            ws_accept(sock, path, hdrs, buf)
            return
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
    runs = (("sse", SUBS, SUBS, []), ("longpoll", 0, 0, []), ("ws", SUBS, SUBS, []),
            ("ws", SUBS, SUBS, ["--ws-json"]), ("ws", SUBS, SUBS, ["--ws-deflate"]))
    for mode, lost, dups, extra in runs:
        pings["sent"] = pings["pongs"] = 0
        out = subprocess.run([TOOL, mode, "--port", str(port), "-n", str(SUBS), "-m", str(EVENTS),
                              "--drain", "1", "--timeout", "30", "--topic", "x"] + extra,
                             capture_output=True, text=True, timeout=60)
        mode = " ".join([mode] + extra)
        r = json.loads(out.stdout)
        want = {"deliveries": EVENTS * SUBS - lost + dups, "loss": lost, "duplicates": dups,
                "connect_failures": 0, "protocol_errors": 0, "unknown_seq": 0}
        if mode.startswith("ws"):
            time.sleep(0.2)
            with lock:
                want["ws_pings"] = pings["sent"]
                r["pongs seen by the server"] = pings["pongs"]
                want["pongs seen by the server"] = pings["sent"]
            if "--ws-deflate" in extra:
                want["ws_deflate_negotiated"] = SUBS
                want["ws_compressed_messages"] = EVENTS * SUBS - lost + dups
        bad = {k: (r[k], v) for k, v in want.items() if r[k] != v}
        print(f"{mode}: {'ok' if not bad else 'FAILED ' + str(bad)}")
        if bad:
            print(out.stdout, out.stderr)
            ok = False
        with lock:
            history.clear()
            streams.clear()
            waiters.clear()
            for s, _ in wsocks:
                s.close()
            wsocks.clear()
    print("1 passed, 0 failed" if ok else "0 passed, 1 failed")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
