-- Prosody for the XMPP channel tests: everything of this instance lives in @DIR@
-- (data, pid, log), it listens on loopback ports of its own, and it has the gateway's
-- component. @DIR@, @C2S@, @COMPONENT_PORT@, @COMPONENT@ and @SECRET@ are filled in
-- by the test that starts it.
run_as_root = true
pidfile = "@DIR@/prosody.pid"
data_path = "@DIR@/data"
log = { { levels = { min = "info" }, to = "file", filename = "@DIR@/prosody.log" } }

interfaces = { "127.0.0.1" }
c2s_ports = { @C2S@ }
component_ports = { @COMPONENT_PORT@ }
component_interfaces = { "127.0.0.1" }
http_ports = { }
https_ports = { }
c2s_direct_tls_ports = { }
s2s_ports = { }

-- Loopback only: plain logins without TLS.
c2s_require_encryption = false
s2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
storage = "internal"

modules_enabled = { "roster", "saslauth", "disco", "ping", "presence", "posix", "offline" }
modules_disabled = { "s2s", "tls" }
limits = { c2s = { rate = "100mb/s" } }

VirtualHost "localhost"

Component "@COMPONENT@"
    component_secret = "@SECRET@"
