"""XMPP channel benchmark: messages/s both ways through a real Prosody.

Starts its own Prosody (tests/peers/xmpp/prosody.cfg.lua in a temporary directory) and
the given switchboard binary with the component configured, logs a slixmpp user in, and
measures:

  outbound  POST /v1/messages (8 HTTP/1.1 keep-alive connections in Python, or 50 from
            `switchboard-bench` with --poster) -> component ->
            Prosody -> the user's client: from the first POST to the last message
            received by the client;
  inbound   the client -> Prosody -> component -> committed: N messages with XEP-0184
            receipt requests, from the first send to the last receipt (a receipt is
            written only after the commit).

With --client (the compiled `xmpp-load` user), that client logs in instead of slixmpp
for both legs, so that the client is not what limits the figures.

Usage: bench.py --switchboard target/release/switchboard [--count 5000]
                [--poster target/release/switchboard-bench]
                [--client target/release/xmpp-load]
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = "sk_bench_xmpp"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what):
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {port}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--switchboard", required=True)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--poster", help="post the outbound leg with this switchboard-bench "
                        "binary (50 connections) instead of 8 Python threads")
    parser.add_argument("--client", help="the user is this xmpp-load binary instead of "
                        "slixmpp")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="xmpp-bench-")
    procs = []
    try:
        c2s, comp = free_port(), free_port()
        os.makedirs(f"{tmp}/certs")
        with open(f"{HERE}/prosody.cfg.lua") as f:
            cfg = (f.read().replace("@DIR@", tmp).replace("@C2S@", str(c2s))
                   .replace("@COMPONENT_PORT@", str(comp))
                   .replace("@COMPONENT@", "sms.localhost").replace("@SECRET@", "s"))
        cfg = cfg.replace('min = "info"', 'min = "warn"')
        with open(f"{tmp}/prosody.cfg.lua", "w") as f:
            f.write(cfg)
        procs.append(subprocess.Popen(["prosody", "--config", f"{tmp}/prosody.cfg.lua", "-F"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(c2s, "prosody")
        subprocess.run(["prosodyctl", "--config", f"{tmp}/prosody.cfg.lua", "register",
                        "alice", "localhost", "pw"], check=True, capture_output=True)
        http_port = free_port()
        with open(f"{tmp}/switchboard.toml", "w") as f:
            f.write(f"""[http]
listen = "127.0.0.1:{http_port}"
[database]
url = "sqlite://{tmp}/switchboard.db"
[[tenants]]
id = "acme"
api_keys = ["{KEY}"]
addresses = ["+15550100", "xmpp:bench@sms.localhost"]
[xmpp]
component = "sms.localhost"
server = "127.0.0.1:{comp}"
secret = "s"
tenant = "acme"
""")
        env = dict(os.environ, SWITCHBOARD_LOG=os.environ.get("SWITCHBOARD_LOG", "warn"))
        procs.append(subprocess.Popen([args.switchboard, "serve", "--config",
                                       f"{tmp}/switchboard.toml"], env=env,
                                      stdout=subprocess.DEVNULL))
        wait_port(http_port, "switchboard")
        login = ["--server", f"127.0.0.1:{c2s}", "--jid", "alice@localhost", "--password", "pw"]

        def event(kind, proc=None):
            proc = proc or user
            for line in proc.stdout:
                e = json.loads(line)
                if e["event"] == kind:
                    return e
            raise SystemExit(f"the user exited before {kind}: {proc.wait()}")

        def cmd(**c):
            user.stdin.write(json.dumps(c) + "\n")
            user.stdin.flush()

        if args.client:
            user = None
        else:
            user = subprocess.Popen([sys.executable, f"{HERE}/user.py", "--jid",
                                     "alice@localhost", "--password", "pw", "--port", str(c2s)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            procs.append(user)
            event("ready")
        # Wait until the component is bound.
        deadline = time.time() + 30
        while True:
            conn = http.client.HTTPConnection("127.0.0.1", http_port)
            conn.request("GET", "/v1/connectors", headers={"Authorization": f"Bearer {KEY}"})
            body = json.loads(conn.getresponse().read())
            if any(c["name"] == "xmpp" and c["state"] == "bound" for c in body["data"]):
                break
            if time.time() > deadline:
                sys.exit("the component never bound")
            time.sleep(0.1)

        n = args.count
        # Inbound.
        if args.client:
            sender = subprocess.Popen([args.client, *login, "send", "--to",
                                       "+15550100@sms.localhost", "--count", str(n)],
                                      stdout=subprocess.PIPE, text=True)
            procs.append(sender)
            flooded = event("flooded", sender)
        else:
            cmd(cmd="flood", to="+15550100@sms.localhost", count=n, prefix="in")
            flooded = event("flooded")
        print(f"inbound: {n} messages client -> Prosody -> component -> committed in "
              f"{flooded['seconds']:.2f} s = {n / flooded['seconds']:.0f}/s "
              f"(receipts {flooded['receipts']}, errors {flooded['errors']})")
        # Outbound.
        if args.client:
            receiver = subprocess.Popen([args.client, *login, "receive", "--count", str(n)],
                                        stdout=subprocess.PIPE, text=True)
            procs.append(receiver)
            event("ready", receiver)
        else:
            cmd(cmd="expect", count=n)
            event("expecting")
        start = time.monotonic()

        def post(lo, hi):
            conn = http.client.HTTPConnection("127.0.0.1", http_port)
            for i in range(lo, hi):
                body = json.dumps({"to": "xmpp:alice@localhost", "from": "+15550100",
                                   "text": f"bench {i}"})
                conn.request("POST", "/v1/messages", body,
                             {"Authorization": f"Bearer {KEY}",
                              "Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                if r.status != 202:
                    sys.exit(f"POST answered {r.status}")

        if args.poster:
            r = subprocess.run([args.poster, "--url", f"http://127.0.0.1:{http_port}",
                                "--api-key", KEY, "--to", "xmpp:alice@localhost",
                                "--requests", str(n), "--concurrency", "50", "--text", "bench"],
                               capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"the poster failed: {r.stdout}{r.stderr}")
        else:
            threads = [threading.Thread(target=post, args=(k * n // 8, (k + 1) * n // 8))
                       for k in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        accepted = time.monotonic() - start
        event("got", receiver if args.client else None)
        total = time.monotonic() - start
        print(f"outbound: {n} messages API -> component -> Prosody -> client in {total:.2f} s "
              f"= {n / total:.0f}/s (API accepted all in {accepted:.2f} s = {n / accepted:.0f}/s)")

    finally:
        for p in reversed(procs):
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
