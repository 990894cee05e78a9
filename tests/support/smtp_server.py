"""A real SMTP server for the email tests (aiosmtpd), with a few scripted behaviours.

Usage: smtp_server.py OUTDIR IDLE_TIMEOUT_SECONDS

It prints "PORT <n>" once listening on 127.0.0.1. Each message accepted becomes
OUTDIR/NNNNNN.json: the envelope and the message as Python's email parser reads it.
Recipients whose local part starts with "reject" get 550; with "tempfail", 451 the first
time each address is seen and 250 after. Connections made and lost are appended to
OUTDIR/events. A session idle longer than IDLE_TIMEOUT_SECONDS is closed by the server.
OUTDIR "-" keeps nothing (a sink for the benchmark).
"""

import asyncio
import base64
import email
import email.policy
import json
import os
import socket
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

OUT = sys.argv[1]
IDLE = float(sys.argv[2])


def event(line):
    if OUT == "-":
        return
    with open(os.path.join(OUT, "events"), "a") as f:
        f.write(line + "\n")


class Handler:
    def __init__(self):
        self.seen = set()
        self.count = 0

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        # On a session that has already carried a message, a sender starting "vanish" finds
        # the connection cut without a word, and one starting "bye" gets 421 and a close:
        # what a client sees when the server ends an idle session just as it is reused.
        reused = getattr(session, "delivered", 0) > 0
        if reused and address.startswith("vanish"):
            server.transport.abort()
            return "250 OK"
        if reused and address.startswith("bye"):
            server.transport.write(b"421 4.4.2 idle too long, closing\r\n")
            server.transport.close()
            return "250 OK"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0]
        if local.startswith("reject"):
            return "550 5.1.1 <%s>: no such mailbox" % address
        if local.startswith("tempfail") and address not in self.seen:
            self.seen.add(address)
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        session.delivered = getattr(session, "delivered", 0) + 1
        self.count += 1
        if OUT == "-":  # a sink, for the benchmark
            return "250 2.0.0 queued"
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        parts = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            payload = part.get_payload(decode=True) or b""
            parts.append({
                "content_type": part.get_content_type(),
                "filename": part.get_filename(),
                "payload_b64": base64.b64encode(payload).decode(),
            })
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": {k.lower(): str(v) for k, v in msg.items()},
            "parts": parts,
        }
        path = os.path.join(OUT, "%06d.json" % self.count)
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 2.0.0 queued as %06d" % self.count


class Session(SMTP):
    def connection_made(self, transport):
        event("connected")
        super().connection_made(transport)

    def connection_lost(self, exc):
        event("lost")
        super().connection_lost(exc)


class Server(Controller):
    def factory(self):
        return Session(self.handler, timeout=IDLE, hostname="localhost")


def main():
    # aiosmtpd 1.4 cannot listen on port 0 (its start-up check connects to the port it was
    # given), so take a free port first.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    controller = Server(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    print("PORT %d" % port, flush=True)
    try:
        sys.stdin.read()  # runs until the test closes its end
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
