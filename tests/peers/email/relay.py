"""An SMTP relay sink for the email channel's tests, on aiosmtpd.

Usage: python relay.py OUTDIR

Listens on 127.0.0.1 (a port of its own, printed as "listening PORT" on stdout) and, for
every mail taken, writes OUTDIR/N.eml (the bytes as received) and then OUTDIR/N.json:
the envelope (mail_from, rcpt_tos) and the headers and parts as Python's own `email`
package reads them. Recipients decide the answer, so tests can ask for failures:
  reject-*@...  -> 550 5.1.1 at RCPT
  busy-*@...    -> 451 4.3.0 at RCPT
Each RCPT is also appended to OUTDIR/rcpt.log.
"""

import asyncio
import base64
import email
import email.policy
import json
import os
import sys

from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, outdir):
        self.outdir = outdir
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with open(os.path.join(self.outdir, "rcpt.log"), "a") as log:
            log.write(address + "\n")
        if address.startswith("reject-"):
            return "550 5.1.1 No such user here"
        if address.startswith("busy-"):
            return "451 4.3.0 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        n = self.count
        raw = envelope.original_content or envelope.content
        with open(os.path.join(self.outdir, f"{n}.eml"), "wb") as f:
            f.write(raw)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        parts = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            payload = part.get_payload(decode=True) or b""
            parts.append(
                {
                    "content_type": part.get_content_type(),
                    "charset": part.get_content_charset(),
                    "transfer_encoding": part.get("Content-Transfer-Encoding"),
                    "filename": part.get_filename(),
                    "base64": base64.b64encode(payload).decode(),
                    "text": part.get_content() if part.get_content_maintype() == "text" else None,
                }
            )
        summary = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": {k.lower(): str(v) for k, v in msg.items()},
            "raw_headers": {k.lower(): v for k, v in msg.raw_items()},
            "parts": parts,
            "defects": [str(d) for d in msg.defects],
        }
        tmp = os.path.join(self.outdir, f"{n}.json.tmp")
        with open(tmp, "w") as f:
            json.dump(summary, f)
        os.rename(tmp, os.path.join(self.outdir, f"{n}.json"))
        return "250 2.0.0 Message accepted"


async def main(outdir):
    sink = Sink(outdir)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(sink, hostname="relay.test", decode_data=False, enable_SMTPUTF8=True),
        "127.0.0.1",
        0,
    )
    port = server.sockets[0].getsockname()[1]
    print(f"listening {port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
