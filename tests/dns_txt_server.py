"""A tiny authoritative DNS server for the tests: TXT records from a JSON file, over UDP and TCP (RFC 1035).

    python tests/dns_txt_server.py SPEC.json        # {"listen": "127.0.0.1", "port": 53, "log": PATH,
                                                    #  "txt": {"sel._domainkey.example.org": ["v=DKIM1; …"]}}

It runs inside a test's network namespace, where /etc/resolv.conf is bind-mounted to name it, so that programs
that resolve through the C library (OpenDKIM's `opendkim-testmsg`) look their keys up as they would on a
real mail server. A TXT value longer than 255 bytes is split into 255-byte character-strings, as zone files do
with a 2048-bit key. Names the file does not hold get NXDOMAIN; other record types of a known name get an
empty answer. A UDP answer over 512 bytes comes back truncated (TC), and the resolver asks again over TCP.
Every question is logged as a JSON line {"name", "type", "transport"}; the spec file is read again on each
question, so a test can change a record while the server runs.
"""

from __future__ import annotations

import json
import socket
import socketserver
import struct
import sys
import threading
from pathlib import Path

TXT, CLASS_IN = 16, 1
UDP_LIMIT = 512


def parse_question(packet: bytes) -> tuple[int, int, str, int, bytes]:
    """(id, flags, name, type, the question section as sent)."""
    ident, flags, questions = struct.unpack("!HHH", packet[:6])
    if questions != 1:
        raise ValueError("one question per query")
    labels, offset = [], 12
    while packet[offset]:
        length = packet[offset]
        labels.append(packet[offset + 1 : offset + 1 + length].decode("ascii"))
        offset += 1 + length
    qtype, qclass = struct.unpack("!HH", packet[offset + 1 : offset + 5])
    if qclass != CLASS_IN:
        raise ValueError("class IN only")
    return ident, flags, ".".join(labels).lower(), qtype, packet[12 : offset + 5]


def answer(packet: bytes, spec_path: Path, transport: str) -> bytes:
    ident, flags, name, qtype, question = parse_question(packet)
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    with open(spec["log"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"name": name, "type": qtype, "transport": transport}) + "\n")
    records = {key.lower().rstrip("."): values for key, values in spec["txt"].items()}
    answers = []
    if name in records and qtype == TXT:
        for value in records[name]:
            data = value.encode("ascii")
            rdata = b"".join(bytes([len(chunk)]) + chunk for chunk in _chunks(data, 255))
            answers.append(struct.pack("!HHHIH", 0xC00C, TXT, CLASS_IN, 60, len(rdata)) + rdata)
    rcode = 0 if name in records else 3  # NXDOMAIN
    response_flags = 0x8000 | (flags & 0x7900) | 0x0400 | 0x0080 | rcode  # QR, opcode+RD kept, AA, RA
    header = struct.pack("!HHHHHH", ident, response_flags, 1, len(answers), 0, 0)
    message = header + question + b"".join(answers)
    if transport == "udp" and len(message) > UDP_LIMIT:
        truncated = struct.pack("!HHHHHH", ident, response_flags | 0x0200, 1, 0, 0, 0)
        return truncated + question
    return message


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def main() -> None:
    spec_path = Path(sys.argv[1])
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    address = (spec.get("listen", "127.0.0.1"), int(spec.get("port", 53)))

    class Udp(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            packet, sock = self.request
            try:
                sock.sendto(answer(packet, spec_path, "udp"), self.client_address)
            except (ValueError, IndexError, struct.error) as exc:
                print(f"bad query: {exc}", file=sys.stderr, flush=True)

    class Tcp(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while True:
                size = self.rfile.read(2)
                if len(size) < 2:
                    return
                packet = self.rfile.read(struct.unpack("!H", size)[0])
                try:
                    reply = answer(packet, spec_path, "tcp")
                except (ValueError, IndexError, struct.error) as exc:
                    print(f"bad query: {exc}", file=sys.stderr, flush=True)
                    return
                self.wfile.write(struct.pack("!H", len(reply)) + reply)

    socketserver.ThreadingUDPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    udp = socketserver.ThreadingUDPServer(address, Udp)
    tcp = socketserver.ThreadingTCPServer(address, Tcp)
    threading.Thread(target=udp.serve_forever, daemon=True).start()
    print(f"serving DNS on {address[0]} port {address[1]} (udp, tcp)", flush=True)
    try:
        tcp.serve_forever()
    finally:
        udp.shutdown()


if __name__ == "__main__":
    socket.setdefaulttimeout(10)
    main()
