-- Prosody: the Switchboard gateway as an external component (XEP-0114).
--
-- Put this in /etc/prosody/conf.d/ (or append it to prosody.cfg.lua) and restart
-- Prosody. The gateway's [xmpp] section must match:
--
--   [xmpp]
--   component = "sms.example.org"
--   server = "127.0.0.1:5347"
--   secret = "change-me"
--   tenant = "acme"
--
-- Users then write to +14155550100@sms.example.org to send an SMS, and get messages
-- from the gateway from <sender>@sms.example.org. For users of other servers, publish
-- the component domain in DNS (an A/AAAA or SRV record for xmpp-server pointing at this
-- Prosody) so their servers can reach it over s2s.

-- The component port listens on loopback only: the secret travels in a SHA-1 digest
-- over plain TCP, so keep the gateway on the same host or a private network.
component_ports = { 5347 }
component_interfaces = { "127.0.0.1" }

Component "sms.example.org"
    component_secret = "change-me"
