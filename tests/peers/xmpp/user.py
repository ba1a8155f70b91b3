"""An XMPP user for the XMPP channel tests and benchmark, on slixmpp.

Logs in as --jid over plain TCP to --host/--port and speaks JSON lines: it prints one
line per event on stdout ({"event": "ready"}, "message", "receipt", "error",
"presence", "got", "flooded") and reads one command per line on stdin ("send",
"displayed", "presence", "subscribe", "raw", "expect", "flood", "quit"). XEP-0184
receipt requests are answered by slixmpp itself.
"""

import argparse
import asyncio
import json
import sys
import time

import slixmpp


def emit(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class User(slixmpp.ClientXMPP):
    def __init__(self, jid, password, ack):
        super().__init__(jid, password)
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0184")
        self.register_plugin("xep_0199")
        self.register_plugin("xep_0333")
        self.plugin["xep_0184"].auto_ack = ack
        self.plugin["xep_0184"].auto_request = False
        self.plugin["feature_mechanisms"].unencrypted_plain = True
        self.expect = None
        self.flood = None
        self.commands_task = None
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("message_error", self.on_message)
        self.add_event_handler("receipt_received", self.on_receipt)
        self.add_event_handler("presence_subscribed", self.on_subscribed)
        self.add_event_handler("disconnected", lambda _: emit(event="disconnected"))

    async def start(self, _):
        self.send_presence()
        await self.get_roster()
        # The loop holds tasks weakly, and the pipe's protocol holds its reader weakly:
        # without this reference the garbage collector may take the command reader
        # while it waits, and later commands are never read.
        self.commands_task = asyncio.ensure_future(self.commands())
        emit(event="ready")

    def on_message(self, msg):
        if msg["type"] == "error":
            # Read from the XML: slixmpp knows only the RFC 3920 conditions.
            ns = "{urn:ietf:params:xml:ns:xmpp-stanzas}"
            error = msg.xml.find("{jabber:client}error")
            conditions = [] if error is None else [
                c.tag[len(ns):] for c in error if c.tag.startswith(ns) and c.tag != ns + "text"]
            emit(event="error", id=msg["id"], condition=conditions[0] if conditions else "",
                 text=msg["error"]["text"], **{"from": str(msg["from"])})
            if self.flood is not None:
                self.flood["errors"] += 1
                self.flood_done()
            return
        if not msg["body"]:
            return
        if self.expect is not None:
            self.expect["seen"] += 1
            if self.expect["seen"] == self.expect["count"]:
                emit(event="got", count=self.expect["count"],
                     seconds=time.monotonic() - self.expect["start"])
                self.expect = None
            return
        emit(event="message", id=msg["id"], body=msg["body"], thread=msg["thread"],
             receipt=bool(msg["request_receipt"]), markable=bool(msg.xml.find(
                 "{urn:xmpp:chat-markers:0}markable") is not None),
             **{"from": str(msg["from"]), "to": str(msg["to"])})

    def on_receipt(self, msg):
        if self.flood is not None:
            self.flood["receipts"] += 1
            self.flood_done()
            return
        emit(event="receipt", id=msg["receipt"], **{"from": str(msg["from"])})

    def on_subscribed(self, pres):
        emit(event="subscribed", **{"from": str(pres["from"])})

    def flood_done(self):
        f = self.flood
        if f["receipts"] + f["errors"] == f["count"]:
            emit(event="flooded", count=f["count"], receipts=f["receipts"],
                 errors=f["errors"], seconds=time.monotonic() - f["start"])
            self.flood = None

    def send_chat(self, to, body, mid=None, receipt=True):
        msg = self.make_message(mto=to, mbody=body, mtype="chat")
        if mid:
            msg["id"] = mid
        if receipt:
            msg["request_receipt"] = True
        msg.send()
        return msg["id"]

    async def commands(self):
        reader = asyncio.StreamReader()
        await self.loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                break
            cmd = json.loads(line)
            kind = cmd["cmd"]
            if kind == "send":
                mid = self.send_chat(cmd["to"], cmd["body"], cmd.get("id"),
                                     cmd.get("receipt", True))
                emit(event="sent", id=mid)
            elif kind == "displayed":
                self.plugin["xep_0333"].send_marker(cmd["to"], cmd["id"], "displayed")
            elif kind == "presence":
                self.send_presence(pshow=cmd.get("show"), pstatus=cmd.get("status"),
                                   ptype=cmd.get("type"))
            elif kind == "subscribe":
                self.send_presence(pto=cmd["to"], ptype="subscribe")
            elif kind == "raw":
                self.send_raw(cmd["xml"])
            elif kind == "expect":
                self.expect = {"count": cmd["count"], "seen": 0,
                               "start": time.monotonic()}
                emit(event="expecting", count=cmd["count"])
            elif kind == "flood":
                count = cmd["count"]
                self.flood = {"count": count, "receipts": 0, "errors": 0,
                              "start": time.monotonic()}
                prefix = cmd.get("prefix", "flood")
                for i in range(count):
                    self.send_chat(cmd["to"], f"{prefix} {i}", f"{prefix}-{i}")
                    if i % 500 == 499:
                        await asyncio.sleep(0)
            elif kind == "quit":
                self.disconnect()
                break


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jid", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--no-ack", action="store_true")
    args = parser.parse_args()
    user = User(args.jid, args.password, not args.no_ack)
    user.connect(args.host, args.port)
    asyncio.get_event_loop().run_until_complete(user.disconnected)


if __name__ == "__main__":
    main()
