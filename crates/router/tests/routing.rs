//! Routing decisions, table-driven: each case is a route table (as TOML, as an operator
//! writes it), connectors, address owners and one request, with the decision expected.

use std::collections::HashMap;

use serde::Deserialize;
use switchboard_model::{Address, Channel, Direction};
use switchboard_router::{
    ConnectorInfo, Decision, FailCode, MAX_REWRITES, RouteConfig, RouteConfigError, RouteRequest,
    RouteTable,
};

#[derive(Deserialize)]
struct Config {
    #[serde(default)]
    routes: Vec<RouteConfig>,
}

fn routes(toml_text: &str) -> Vec<RouteConfig> {
    toml::from_str::<Config>(toml_text)
        .unwrap_or_else(|e| panic!("bad TOML in test: {e}\n{toml_text}"))
        .routes
}

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// The connectors of the DESIGN.md example: one SMPP connector and the three channels.
const STANDARD: &[(&str, Channel)] = &[
    ("upstream-a", Channel::Sms),
    ("sip", Channel::Sip),
    ("xmpp", Channel::Xmpp),
    ("email", Channel::Email),
];
/// Two SMPP connectors: the SMS channel needs a route to choose.
const TWO_SMS: &[(&str, Channel)] = &[
    ("upstream-a", Channel::Sms),
    ("upstream-b", Channel::Sms),
    ("sip", Channel::Sip),
    ("xmpp", Channel::Xmpp),
    ("email", Channel::Email),
];

const OWNERS: &[(&str, &str)] = &[
    ("+15550100", "acme"),
    ("support@mail.example.test", "acme"),
    ("+15550199", "beta"),
    ("xmpp:bob@localhost", "beta"),
];

struct Req {
    direction: Direction,
    tenant: &'static str,
    from: Option<&'static str>,
    to: &'static str,
    arrived_on: Option<Channel>,
}

const fn out(tenant: &'static str, to: &'static str) -> Req {
    Req {
        direction: Direction::Outbound,
        tenant,
        from: None,
        to,
        arrived_on: None,
    }
}

const fn out_from(tenant: &'static str, from: &'static str, to: &'static str) -> Req {
    Req {
        direction: Direction::Outbound,
        tenant,
        from: Some(from),
        to,
        arrived_on: None,
    }
}

const fn inb(tenant: &'static str, arrived_on: Channel, to: &'static str) -> Req {
    Req {
        direction: Direction::Inbound,
        tenant,
        from: None,
        to,
        arrived_on: Some(arrived_on),
    }
}

enum Expect {
    Send {
        connector: &'static str,
        to: &'static str,
        tenant: &'static str,
        rewritten_from: &'static [&'static str],
        route: Option<usize>,
    },
    Receive {
        tenant: &'static str,
        to: &'static str,
        rewritten_from: &'static [&'static str],
    },
    Unknown(&'static str),
    /// The code and a piece of the detail.
    Fail(FailCode, &'static str),
}

const fn send(connector: &'static str, to: &'static str, route: Option<usize>) -> Expect {
    Expect::Send {
        connector,
        to,
        tenant: "acme",
        rewritten_from: &[],
        route,
    }
}

struct Case {
    name: &'static str,
    routes: &'static str,
    connectors: &'static [(&'static str, Channel)],
    request: Req,
    expect: Expect,
}

fn cases() -> Vec<Case> {
    use Channel::*;
    use Expect::*;
    vec![
        // Order.
        Case {
            name: "first match wins",
            routes: r#"
                [[routes]]
                match = { to = "+1555*" }
                connector = "upstream-a"
                [[routes]]
                match = { to = "+15550123" }
                connector = "upstream-b"
            "#,
            connectors: TWO_SMS,
            request: out("acme", "+15550123"),
            expect: send("upstream-a", "+15550123", Some(0)),
        },
        Case {
            name: "a later route when the first does not hold",
            routes: r#"
                [[routes]]
                match = { to = "+1555*" }
                connector = "upstream-a"
                [[routes]]
                match = { to = "+1415*" }
                connector = "upstream-b"
            "#,
            connectors: TWO_SMS,
            request: out("acme", "+14155550100"),
            expect: send("upstream-b", "+14155550100", Some(1)),
        },
        Case {
            name: "an empty match holds for every outbound message",
            routes: r#"
                [[routes]]
                connector = "upstream-b"
            "#,
            connectors: TWO_SMS,
            request: out("acme", "+14155550100"),
            expect: send("upstream-b", "+14155550100", Some(0)),
        },
        // Direction.
        Case {
            name: "a route without direction is outbound only: inbound skips it",
            routes: r#"
                [[routes]]
                match = { to = "+1555*" }
                connector = "upstream-a"
            "#,
            connectors: STANDARD,
            request: inb("acme", Sms, "+15550123"),
            expect: Unknown("+15550123"),
        },
        Case {
            name: "an inbound owned address skips an outbound route and is received",
            routes: r#"
                [[routes]]
                match = { to = "+1555*" }
                connector = "upstream-a"
            "#,
            connectors: STANDARD,
            request: inb("acme", Sms, "+15550199"),
            expect: Receive {
                tenant: "beta",
                to: "+15550199",
                rewritten_from: &[],
            },
        },
        Case {
            name: "an inbound route does not apply to outbound",
            routes: r#"
                [[routes]]
                match = { to = "+1555*", direction = "inbound" }
                connector = "upstream-b"
            "#,
            connectors: TWO_SMS,
            request: out("acme", "+15550123"),
            expect: Fail(
                FailCode::NoRoute,
                "2 connectors for channel sms and no route chooses",
            ),
        },
        Case {
            name: "an inbound route applies to inbound",
            routes: r#"
                [[routes]]
                match = { to = "+1555*", direction = "inbound" }
                connector = "upstream-b"
            "#,
            connectors: TWO_SMS,
            request: inb("acme", Sms, "+15550123"),
            expect: send("upstream-b", "+15550123", Some(0)),
        },
        Case {
            name: "direction any applies to outbound",
            routes: r#"
                [[routes]]
                match = { to = "+1555*", direction = "any" }
                connector = "upstream-b"
            "#,
            connectors: TWO_SMS,
            request: out("acme", "+15550123"),
            expect: send("upstream-b", "+15550123", Some(0)),
        },
        Case {
            name: "direction any applies to inbound, owned by the destination's owner",
            routes: r#"
                [[routes]]
                match = { to = "+1555*", direction = "any" }
                connector = "upstream-b"
            "#,
            connectors: TWO_SMS,
            request: inb("acme", Sms, "+15550199"),
            expect: Send {
                connector: "upstream-b",
                to: "+15550199",
                tenant: "beta",
                rewritten_from: &[],
                route: Some(0),
            },
        },
        // From.
        Case {
            name: "from glob holds",
            routes: r#"
                [[routes]]
                match = { from = "+1415*" }
                connector = "upstream-b"
                [[routes]]
                match = { to = "*" }
                connector = "upstream-a"
            "#,
            connectors: TWO_SMS,
            request: out_from("acme", "+14155550100", "+15550123"),
            expect: send("upstream-b", "+15550123", Some(0)),
        },
        Case {
            name: "from glob does not hold for another sender",
            routes: r#"
                [[routes]]
                match = { from = "+1415*" }
                connector = "upstream-b"
                [[routes]]
                match = { to = "*" }
                connector = "upstream-a"
            "#,
            connectors: TWO_SMS,
            request: out_from("acme", "+12125550100", "+15550123"),
            expect: send("upstream-a", "+15550123", Some(1)),
        },
        Case {
            name: "from glob does not hold without a sender, even for *",
            routes: r#"
                [[routes]]
                match = { from = "*" }
                connector = "upstream-b"
                [[routes]]
                match = { to = "*" }
                connector = "upstream-a"
            "#,
            connectors: TWO_SMS,
            request: out("acme", "+15550123"),
            expect: send("upstream-a", "+15550123", Some(1)),
        },
        // Channel and tenant.
        Case {
            name: "channel match skips another channel's address",
            routes: r#"
                [[routes]]
                match = { channel = "sms" }
                connector = "upstream-b"
            "#,
            connectors: TWO_SMS,
            request: out("acme", "sip:bob@example.org"),
            expect: send("sip", "sip:bob@example.org", None),
        },
        Case {
            name: "channel match takes its channel's address",
            routes: r#"
                [[routes]]
                match = { channel = "sms" }
                connector = "upstream-b"
            "#,
            connectors: TWO_SMS,
            request: out("acme", "+15550123"),
            expect: send("upstream-b", "+15550123", Some(0)),
        },
        Case {
            name: "a connector-only route holds only for its connector's channel",
            routes: r#"
                [[routes]]
                match = { to = "+1555*" }
                connector = "upstream-a"
            "#,
            connectors: STANDARD,
            request: out("acme", "+15550123@sms.example.test"),
            expect: send("email", "+15550123@sms.example.test", None),
        },
        Case {
            name: "tenant match holds",
            routes: r#"
                [[routes]]
                match = { tenant = "beta" }
                connector = "upstream-b"
                [[routes]]
                match = { to = "*" }
                connector = "upstream-a"
            "#,
            connectors: TWO_SMS,
            request: out("beta", "+15550123"),
            expect: Send {
                connector: "upstream-b",
                to: "+15550123",
                tenant: "beta",
                rewritten_from: &[],
                route: Some(0),
            },
        },
        Case {
            name: "tenant match does not hold for another tenant",
            routes: r#"
                [[routes]]
                match = { tenant = "beta" }
                connector = "upstream-b"
                [[routes]]
                match = { to = "*" }
                connector = "upstream-a"
            "#,
            connectors: TWO_SMS,
            request: out("acme", "+15550123"),
            expect: send("upstream-a", "+15550123", Some(1)),
        },
        // Rewrites.
        Case {
            name: "rewrite to another channel, then that channel's only connector",
            routes: r#"
                [[routes]]
                match = { to = "+15550123" }
                rewrite_to = "xmpp:Alice@Localhost"
            "#,
            connectors: STANDARD,
            request: out("acme", "+15550123"),
            expect: Send {
                connector: "xmpp",
                to: "xmpp:alice@localhost",
                tenant: "acme",
                rewritten_from: &["+15550123"],
                route: None,
            },
        },
        Case {
            name: "rewrite then a later route for the new address",
            routes: r#"
                [[routes]]
                match = { to = "+15550123" }
                rewrite_to = "+15550124"
                [[routes]]
                match = { to = "+15550124" }
                rewrite_to = "+15550125"
                [[routes]]
                match = { to = "+15550125" }
                connector = "upstream-b"
            "#,
            connectors: TWO_SMS,
            request: out("acme", "+15550123"),
            expect: Send {
                connector: "upstream-b",
                to: "+15550125",
                tenant: "acme",
                rewritten_from: &["+15550123", "+15550124"],
                route: Some(2),
            },
        },
        Case {
            name: "rewrite with connector sends without routing again",
            routes: r#"
                [[routes]]
                match = { to = "+15550123" }
                rewrite_to = "+15550124"
                connector = "upstream-b"
                [[routes]]
                match = { to = "+15550124" }
                connector = "upstream-a"
            "#,
            connectors: TWO_SMS,
            request: out("acme", "+15550123"),
            expect: Send {
                connector: "upstream-b",
                to: "+15550124",
                tenant: "acme",
                rewritten_from: &["+15550123"],
                route: Some(0),
            },
        },
        Case {
            name: "rewrite with connector onto another channel",
            routes: r#"
                [[routes]]
                match = { to = "+15550123", channel = "sms" }
                rewrite_to = "mailto:Ops@Mail.Example.Test"
                connector = "email"
            "#,
            connectors: STANDARD,
            request: out("acme", "+15550123"),
            expect: Send {
                connector: "email",
                to: "Ops@mail.example.test",
                tenant: "acme",
                rewritten_from: &["+15550123"],
                route: Some(0),
            },
        },
        Case {
            name: "rewrite keeps the sender for the next round",
            routes: r#"
                [[routes]]
                match = { to = "+15550123" }
                rewrite_to = "+15550124"
                [[routes]]
                match = { to = "+15550124", from = "+1415*" }
                connector = "upstream-b"
                [[routes]]
                match = { to = "+15550124" }
                connector = "upstream-a"
            "#,
            connectors: TWO_SMS,
            request: out_from("acme", "+14155550100", "+15550123"),
            expect: Send {
                connector: "upstream-b",
                to: "+15550124",
                tenant: "acme",
                rewritten_from: &["+15550123"],
                route: Some(1),
            },
        },
        Case {
            name: "rewrite loop A -> B -> A",
            routes: r#"
                [[routes]]
                match = { to = "+15550123" }
                rewrite_to = "+15550124"
                [[routes]]
                match = { to = "+15550124" }
                rewrite_to = "+15550123"
            "#,
            connectors: STANDARD,
            request: out("acme", "+15550123"),
            expect: Fail(
                FailCode::RewriteLoop,
                "rewrite loop at routes[1]: +15550123 -> +15550124 -> +15550123",
            ),
        },
        Case {
            name: "self loop: a route rewriting to the address it matches",
            routes: r#"
                [[routes]]
                match = { to = "+15550123" }
                rewrite_to = "+15550123"
            "#,
            connectors: STANDARD,
            request: out("acme", "+15550123"),
            expect: Fail(FailCode::RewriteLoop, "+15550123 -> +15550123"),
        },
        Case {
            name: "self loop: a glob that also matches its own target",
            routes: r#"
                [[routes]]
                match = { to = "+1555*" }
                rewrite_to = "+15550100"
            "#,
            connectors: STANDARD,
            request: out("acme", "+15550123"),
            expect: Fail(FailCode::RewriteLoop, "+15550123 -> +15550100 -> +15550100"),
        },
        // No route, outbound.
        Case {
            name: "no route, no connector of the channel",
            routes: "",
            connectors: &[("upstream-a", Sms)],
            request: out("acme", "bob@example.org"),
            expect: Fail(FailCode::NoRoute, "no connector for channel email"),
        },
        Case {
            name: "no route, one connector of the channel",
            routes: "",
            connectors: STANDARD,
            request: out("acme", "+15550123"),
            expect: send("upstream-a", "+15550123", None),
        },
        Case {
            name: "no route, two connectors of the channel",
            routes: "",
            connectors: TWO_SMS,
            request: out("acme", "+15550123"),
            expect: Fail(
                FailCode::NoRoute,
                "2 connectors for channel sms and no route chooses",
            ),
        },
        Case {
            name: "outbound to an owned address still leaves through a connector",
            routes: "",
            connectors: STANDARD,
            request: out("beta", "+15550100"),
            expect: Send {
                connector: "upstream-a",
                to: "+15550100",
                tenant: "beta",
                rewritten_from: &[],
                route: None,
            },
        },
        // No route, inbound.
        Case {
            name: "inbound to an owned address is received",
            routes: "",
            connectors: STANDARD,
            request: inb("xmpp-listener", Email, "support@mail.example.test"),
            expect: Receive {
                tenant: "acme",
                to: "support@mail.example.test",
                rewritten_from: &[],
            },
        },
        Case {
            name: "inbound to an owned address on another channel is received, not bridged",
            routes: "",
            connectors: STANDARD,
            request: inb("beta", Xmpp, "+15550100"),
            expect: Receive {
                tenant: "acme",
                to: "+15550100",
                rewritten_from: &[],
            },
        },
        Case {
            name: "inbound bridged: from XMPP to an unowned SMS number, for the listener tenant",
            routes: "",
            connectors: STANDARD,
            request: inb("acme", Xmpp, "+14155550100"),
            expect: send("upstream-a", "+14155550100", None),
        },
        Case {
            name: "inbound bridged: from email to an unowned JID",
            routes: "",
            connectors: STANDARD,
            request: inb("beta", Email, "xmpp:carol@localhost"),
            expect: Send {
                connector: "xmpp",
                to: "xmpp:carol@localhost",
                tenant: "beta",
                rewritten_from: &[],
                route: None,
            },
        },
        Case {
            name: "inbound bridged with two connectors of the channel fails",
            routes: "",
            connectors: TWO_SMS,
            request: inb("acme", Xmpp, "+14155550100"),
            expect: Fail(
                FailCode::NoRoute,
                "2 connectors for channel sms and no route chooses",
            ),
        },
        Case {
            name: "inbound bridged with no connector of the channel fails",
            routes: "",
            connectors: &[("xmpp", Xmpp)],
            request: inb("acme", Xmpp, "+14155550100"),
            expect: Fail(FailCode::NoRoute, "no connector for channel sms"),
        },
        Case {
            name: "inbound on the same channel to an unowned address is unknown",
            routes: "",
            connectors: STANDARD,
            request: inb("acme", Sip, "sip:nobody@gw.example.test"),
            expect: Unknown("sip:nobody@gw.example.test"),
        },
        Case {
            name: "inbound without a known arrival channel, unowned, is unknown",
            routes: "",
            connectors: STANDARD,
            request: Req {
                direction: Direction::Inbound,
                tenant: "acme",
                from: None,
                to: "+14155550100",
                arrived_on: None,
            },
            expect: Unknown("+14155550100"),
        },
        Case {
            name: "inbound rewritten to an unowned address on the same channel is sent on",
            routes: r#"
                [[routes]]
                match = { to = "+15550123", direction = "inbound" }
                rewrite_to = "+14155550100"
            "#,
            connectors: STANDARD,
            request: inb("acme", Sms, "+15550123"),
            expect: Send {
                connector: "upstream-a",
                to: "+14155550100",
                tenant: "acme",
                rewritten_from: &["+15550123"],
                route: None,
            },
        },
        // DESIGN.md section 8.
        Case {
            name: "DESIGN.md: inbound bridge to XMPP, owned by the number's owner",
            routes: DESIGN_ROUTES,
            connectors: STANDARD,
            request: inb("acme", Sms, "+15550199"),
            expect: Send {
                connector: "xmpp",
                to: "xmpp:alice@localhost",
                tenant: "beta",
                rewritten_from: &["+15550199"],
                route: None,
            },
        },
        Case {
            name: "DESIGN.md: outbound to the same number takes the first route",
            routes: DESIGN_ROUTES,
            connectors: STANDARD,
            request: out("acme", "+15550199"),
            expect: send("upstream-a", "+15550199", Some(0)),
        },
        Case {
            name: "DESIGN.md: inbound to another number on the same channel is unknown",
            routes: DESIGN_ROUTES,
            connectors: STANDARD,
            request: inb("acme", Sms, "+15550123"),
            expect: Unknown("+15550123"),
        },
    ]
}

/// The `[[routes]]` of DESIGN.md section 8, verbatim.
const DESIGN_ROUTES: &str = r#"
[[routes]]                                           # ordered; first match wins
match = { to = "+1555*" }                            # globs on normalised addresses: to, from; also channel, tenant, direction
connector = "upstream-a"

[[routes]]
match = { to = "+15550199", direction = "inbound" }
rewrite_to = "xmpp:alice@localhost"                  # a bridge: the message leaves on another channel
"#;

fn connectors(list: &[(&str, Channel)]) -> Vec<ConnectorInfo> {
    list.iter()
        .map(|(name, channel)| ConnectorInfo::new(*name, *channel))
        .collect()
}

fn owners(list: &[(&str, &str)]) -> HashMap<Address, String> {
    list.iter()
        .map(|(a, t)| (addr(a), (*t).to_owned()))
        .collect()
}

fn table(routes_toml: &str, list: &[(&str, Channel)]) -> RouteTable {
    RouteTable::new(&routes(routes_toml), &connectors(list))
        .unwrap_or_else(|e| panic!("invalid table: {e:?}"))
}

fn decide(table: &RouteTable, owners: &HashMap<Address, String>, req: &Req) -> Decision {
    let from = req.from.map(addr);
    let to = addr(req.to);
    table.decide(
        &RouteRequest {
            direction: req.direction,
            tenant: req.tenant,
            from: from.as_ref(),
            to: &to,
            arrived_on: req.arrived_on,
        },
        owners,
    )
}

fn addrs(list: &[&str]) -> Vec<Address> {
    list.iter().map(|a| addr(a)).collect()
}

#[test]
fn decisions() {
    let owners = owners(OWNERS);
    let cases = cases();
    assert!(cases.len() >= 35);
    for case in cases {
        let table = table(case.routes, case.connectors);
        let got = decide(&table, &owners, &case.request);
        match case.expect {
            Expect::Fail(code, detail) => match &got {
                Decision::Fail {
                    code: got_code,
                    detail: got_detail,
                } => {
                    assert_eq!(*got_code, code, "{}", case.name);
                    assert!(
                        got_detail.contains(detail),
                        "{}: detail {got_detail:?} lacks {detail:?}",
                        case.name
                    );
                }
                other => panic!("{}: expected Fail({code:?}), got {other:?}", case.name),
            },
            Expect::Send {
                connector,
                to,
                tenant,
                rewritten_from,
                route,
            } => {
                let want = Decision::Send {
                    connector: connector.to_owned(),
                    to: addr(to),
                    tenant: tenant.to_owned(),
                    rewritten_from: addrs(rewritten_from),
                    route,
                };
                assert_eq!(got, want, "{}", case.name);
            }
            Expect::Receive {
                tenant,
                to,
                rewritten_from,
            } => {
                let want = Decision::Receive {
                    tenant: tenant.to_owned(),
                    to: addr(to),
                    rewritten_from: addrs(rewritten_from),
                    route: None,
                };
                assert_eq!(got, want, "{}", case.name);
            }
            Expect::Unknown(to) => {
                assert_eq!(got, Decision::Unknown { to: addr(to) }, "{}", case.name);
            }
        }
    }
}

/// A chain of `n` rewrites: +15550001 -> +15550002 -> ... -> +1555000{n+1}.
fn chain(n: usize) -> String {
    (1..=n)
        .map(|i| {
            format!(
                "[[routes]]\nmatch = {{ to = \"+155500{i:02}\" }}\nrewrite_to = \"+155500{:02}\"\n",
                i + 1
            )
        })
        .collect()
}

#[test]
fn at_most_eight_rewrites() {
    let owners = owners(&[]);
    let ok = table(&chain(MAX_REWRITES), STANDARD);
    let Decision::Send {
        to, rewritten_from, ..
    } = decide(&ok, &owners, &out("acme", "+15550001"))
    else {
        panic!("a chain of {MAX_REWRITES} rewrites should be sent");
    };
    assert_eq!(to, addr("+15550009"));
    assert_eq!(rewritten_from.len(), MAX_REWRITES);

    let too_long = table(&chain(MAX_REWRITES + 1), STANDARD);
    let got = decide(&too_long, &owners, &out("acme", "+15550001"));
    assert!(
        matches!(&got, Decision::Fail { code: FailCode::RewriteLoop, detail } if detail.contains("too many rewrites")),
        "{got:?}"
    );
}

#[test]
fn fail_codes_as_stored() {
    assert_eq!(FailCode::NoRoute.as_str(), "no_route");
    assert_eq!(FailCode::RewriteLoop.as_str(), "rewrite_loop");
    assert_eq!(FailCode::RewriteLoop.to_string(), "rewrite_loop");
}

// ---- The config, as written --------------------------------------------------------

#[test]
fn design_routes_parse() {
    let parsed = routes(DESIGN_ROUTES);
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[0].match_.to.as_deref(), Some("+1555*"));
    assert_eq!(parsed[0].match_.direction, None);
    assert_eq!(parsed[0].connector.as_deref(), Some("upstream-a"));
    assert_eq!(parsed[1].match_.to.as_deref(), Some("+15550199"));
    assert_eq!(
        parsed[1].match_.direction,
        Some(switchboard_router::MatchDirection::Inbound)
    );
    assert_eq!(
        parsed[1].rewrite_to.as_deref(),
        Some("xmpp:alice@localhost")
    );
    assert_eq!(parsed[1].connector, None);
    assert!(RouteTable::new(&parsed, &connectors(STANDARD)).is_ok());
}

#[test]
fn every_match_key_parses() {
    let parsed = routes(
        r#"
        [[routes]]
        name = "vip"
        match = { to = "sip:*", from = "+1415*", channel = "sip", tenant = "acme", direction = "any" }
        connector = "sip"
        "#,
    );
    let m = &parsed[0].match_;
    assert_eq!(m.channel, Some(Channel::Sip));
    assert_eq!(m.tenant.as_deref(), Some("acme"));
    assert_eq!(m.direction, Some(switchboard_router::MatchDirection::Any));
    assert_eq!(parsed[0].name.as_deref(), Some("vip"));
}

#[test]
fn unknown_keys_and_values_are_refused() {
    let bad = [
        "[[routes]]\nmatch = { too = \"+1555*\" }\nconnector = \"a\"",
        "[[routes]]\nmatch = { to = \"+1555*\" }\nconector = \"a\"",
        "[[routes]]\nmatch = { direction = \"sideways\" }\nconnector = \"a\"",
        "[[routes]]\nmatch = { channel = \"fax\" }\nconnector = \"a\"",
    ];
    for text in bad {
        assert!(toml::from_str::<Config>(text).is_err(), "accepted:\n{text}");
    }
}

#[test]
fn route_config_round_trips() {
    let parsed = routes(DESIGN_ROUTES);
    let text = toml::to_string(&Config2 {
        routes: parsed.clone(),
    })
    .expect("serializes");
    assert_eq!(routes(&text), parsed);
}

#[derive(serde::Serialize)]
struct Config2 {
    routes: Vec<RouteConfig>,
}

// ---- Checking the table ------------------------------------------------------------

#[test]
fn every_problem_is_reported_with_its_key() {
    let config = routes(
        r#"
        [[routes]]
        match = { to = "+1555*" }
        connector = "upstream-z"

        [[routes]]
        match = { to = "+15550199" }
        rewrite_to = "not an address!"

        [[routes]]
        match = { to = "+15550100" }

        [[routes]]
        match = { channel = "sip" }
        connector = "upstream-a"

        [[routes]]
        match = { to = "" , from = "" }
        connector = "upstream-a"

        [[routes]]
        match = { to = "+15550123" }
        rewrite_to = "xmpp:alice@localhost"
        connector = "upstream-a"

        [[routes]]
        match = { to = "mailto:*@example.org", tenant = "" }
        connector = "email"

        [[routes]]
        name = "twice"
        connector = "upstream-a"

        [[routes]]
        name = "twice"
        connector = "upstream-a"
        "#,
    );
    let errors = RouteTable::new(&config, &connectors(STANDARD)).expect_err("invalid");
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "routes[0].connector",
            "routes[1].rewrite_to",
            "routes[2]",
            "routes[3].connector",
            "routes[4].match.to",
            "routes[4].match.from",
            "routes[5].connector",
            "routes[6].match.to",
            "routes[6].match.tenant",
            "routes[8].name",
        ]
    );
    let message = |key: &str| {
        errors
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.message.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        message("routes[0].connector"),
        "unknown connector \"upstream-z\""
    );
    assert_eq!(
        message("routes[1].rewrite_to"),
        Address::parse("not an address!")
            .expect_err("invalid")
            .to_string()
    );
    assert!(message("routes[2]").contains("neither connector nor rewrite_to"));
    assert!(message("routes[3].connector").contains("match.channel is sip"));
    assert!(message("routes[4].match.to").contains("empty"));
    assert!(
        message("routes[5].connector")
            .contains("rewrite_to \"xmpp:alice@localhost\" is on channel xmpp")
    );
    assert!(message("routes[6].match.to").contains("never match"));
    assert!(message("routes[8].name").contains("also routes[7]"));
    assert_eq!(
        errors[0].to_string(),
        "routes[0].connector: unknown connector \"upstream-z\""
    );
}

#[test]
fn duplicate_connectors_are_reported() {
    let errors = RouteTable::new(
        &[],
        &connectors(&[("upstream-a", Channel::Sms), ("upstream-a", Channel::Sms)]),
    )
    .expect_err("duplicate");
    assert_eq!(
        errors,
        [RouteConfigError {
            key: "connectors[1].name".into(),
            message: "duplicate connector name \"upstream-a\"".into(),
        }]
    );
}

#[test]
fn the_table_as_get_v1_routes_shows_it() {
    let table = table(
        r#"
        [[routes]]
        name = "carriers"
        match = { to = "+1555*" }
        connector = "upstream-a"

        [[routes]]
        match = { to = "+15550199", direction = "inbound" }
        rewrite_to = "XMPP:Alice@Localhost"
        "#,
        STANDARD,
    );
    assert_eq!(table.routes().len(), 2);
    assert_eq!(table.connectors().len(), 4);
    assert_eq!(
        table.routes()[1].rewrite_to(),
        Some(&addr("xmpp:alice@localhost"))
    );
    let json = serde_json::to_value(&table).expect("serializes");
    assert_eq!(
        json["routes"],
        serde_json::json!([
            {
                "index": 0,
                "name": "carriers",
                "match": { "to": "+1555*", "channel": "sms", "direction": "outbound" },
                "connector": "upstream-a",
                "rewrite_to": null,
            },
            {
                "index": 1,
                "name": null,
                "match": { "to": "+15550199", "direction": "inbound" },
                "connector": null,
                "rewrite_to": "xmpp:alice@localhost",
            },
        ])
    );
    assert_eq!(
        json["connectors"][0],
        serde_json::json!({ "name": "upstream-a", "channel": "sms" })
    );
}
