//! Webhook target URLs and SSRF protection.
//!
//! [`parse_url`] accepts only absolute `http://` / `https://` URLs with a host and no
//! userinfo or fragment. It parses with [`hyper::Uri`], the same parser the sender's HTTP
//! client uses, so the host checked here is the host connected to (two different URL
//! parsers disagreeing is a classic SSRF bypass).
//!
//! [`check_target`] resolves the host and, unless private targets are allowed, refuses
//! addresses that are not publicly routable (see [`forbidden_reason`]). The sender also
//! applies [`forbidden_reason`] to the addresses its connector resolves before connecting,
//! so a name that changes its answer between the check and the connection (DNS
//! rebinding) cannot reach a forbidden address either.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hyper::Uri;

/// Longest accepted URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// A validated webhook target URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    uri: Uri,
    host: String,
    ip: Option<IpAddr>,
    port: u16,
    https: bool,
}

impl Target {
    /// The URL, as the HTTP client will use it.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The host, lower-cased, without the brackets of an IPv6 literal.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The host as an IP address when the URL names one literally.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    /// The port: explicit, or 80 / 443 by scheme.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the scheme is `https`.
    pub fn is_https(&self) -> bool {
        self.https
    }
}

/// Why a target URL is refused or could not be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Longer than [`MAX_URL_LEN`].
    #[error("URL is longer than {MAX_URL_LEN} bytes")]
    TooLong,
    /// Not a valid absolute URL (or contains spaces, control or non-ASCII characters).
    #[error("invalid URL: {0}")]
    Invalid(String),
    /// The scheme is neither `http` nor `https`.
    #[error("URL scheme must be http or https")]
    UnsupportedScheme,
    /// No host.
    #[error("URL has no host")]
    MissingHost,
    /// Contains `user:password@`.
    #[error("URL must not contain user information")]
    UserInfo,
    /// Contains a `#fragment`.
    #[error("URL must not contain a fragment")]
    Fragment,
    /// The host name could not be resolved (possibly transient).
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's error.
        reason: String,
    },
    /// The host name resolved to no address.
    #[error("{0} resolves to no address")]
    NoAddress(String),
    /// The target is, or resolves to, an address that is not publicly routable.
    #[error("target address {addr} is not allowed: {reason}")]
    Forbidden {
        /// The offending address.
        addr: IpAddr,
        /// Which range it is in.
        reason: &'static str,
    },
}

impl TargetError {
    /// Whether this error is final for this URL (as opposed to a DNS failure that may pass).
    pub fn is_permanent(&self) -> bool {
        !matches!(self, Self::Resolve { .. } | Self::NoAddress(_))
    }
}

/// Parses and validates a webhook target URL (see the module documentation).
pub fn parse_url(url: &str) -> Result<Target, TargetError> {
    if url.len() > MAX_URL_LEN {
        return Err(TargetError::TooLong);
    }
    if url.contains('#') {
        return Err(TargetError::Fragment);
    }
    if let Some(c) = url.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(TargetError::Invalid(format!("unexpected character {c:?}")));
    }
    let uri: Uri = url
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| TargetError::Invalid(e.to_string()))?;
    let https = match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => true,
        Some(s) if s.eq_ignore_ascii_case("http") => false,
        Some(_) => return Err(TargetError::UnsupportedScheme),
        None => return Err(TargetError::Invalid("not an absolute URL".into())),
    };
    let authority = uri.authority().ok_or(TargetError::MissingHost)?;
    if authority.as_str().contains('@') {
        return Err(TargetError::UserInfo);
    }
    let raw_host = authority.host();
    let host = raw_host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(raw_host)
        .to_ascii_lowercase();
    if host.is_empty() {
        return Err(TargetError::MissingHost);
    }
    // `hyper::Uri` treats an empty or out-of-range port as "no port" (and would use the
    // scheme's default); refuse those instead.
    let port_part = authority
        .as_str()
        .strip_prefix(raw_host)
        .ok_or_else(|| TargetError::Invalid("malformed authority".into()))?;
    let port = match port_part.strip_prefix(':') {
        None if port_part.is_empty() => {
            if https {
                443
            } else {
                80
            }
        }
        None => return Err(TargetError::Invalid("malformed authority".into())),
        Some(p) => p
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| p.parse::<u16>().ok())
            .flatten()
            .filter(|&p| p != 0)
            .ok_or_else(|| TargetError::Invalid(format!("bad port {p:?}")))?,
    };
    let ip = host.parse::<IpAddr>().ok();
    if raw_host.starts_with('[') && !matches!(ip, Some(IpAddr::V6(_))) {
        return Err(TargetError::Invalid("bad IPv6 literal".into()));
    }
    Ok(Target {
        uri,
        host,
        ip,
        port,
        https,
    })
}

/// Resolves the target's host (no lookup for an IP literal) and, unless `allow_private`,
/// refuses it when any resolved address is not publicly routable.
pub async fn check_target(
    target: &Target,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, TargetError> {
    let addrs: Vec<SocketAddr> = match target.ip {
        Some(ip) => vec![SocketAddr::new(ip, target.port)],
        None => tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|e| TargetError::Resolve {
                host: target.host.clone(),
                reason: e.to_string(),
            })?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(TargetError::NoAddress(target.host.clone()));
    }
    if !allow_private {
        check_addrs(&addrs)?;
    }
    Ok(addrs)
}

/// Refuses the whole set when any address is forbidden.
pub(crate) fn check_addrs(addrs: &[SocketAddr]) -> Result<(), TargetError> {
    for addr in addrs {
        if let Some(reason) = forbidden_reason(addr.ip()) {
            return Err(TargetError::Forbidden {
                addr: addr.ip(),
                reason,
            });
        }
    }
    Ok(())
}

/// Why `ip` must not be a webhook target, or `None` when it is publicly routable.
///
/// Refused: unspecified, "this network" 0/8, loopback, RFC 1918 private, link-local,
/// CGNAT 100.64/10, IETF protocol assignments 192.0.0/24, benchmarking 198.18/15,
/// documentation ranges, multicast, reserved 240/4, broadcast; IPv6 unique-local fc00::/7,
/// link-local, site-local, multicast, documentation (2001:db8::/32, 3fff::/20), discard
/// 100::/64, Teredo, local-use NAT64; and IPv4-mapped, IPv4-compatible, NAT64 (64:ff9b::/96)
/// and 6to4 (2002::/16) forms of refused IPv4 addresses.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

const V4_RANGES: &[(Ipv4Addr, u8, &str)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8, "\"this network\" (0.0.0.0/8)"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private (10.0.0.0/8)"),
    (Ipv4Addr::new(100, 64, 0, 0), 10, "CGNAT (100.64.0.0/10)"),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback (127.0.0.0/8)"),
    (
        Ipv4Addr::new(169, 254, 0, 0),
        16,
        "link-local (169.254.0.0/16)",
    ),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private (172.16.0.0/12)"),
    (
        Ipv4Addr::new(192, 0, 0, 0),
        24,
        "IETF protocol assignments (192.0.0.0/24)",
    ),
    (
        Ipv4Addr::new(192, 0, 2, 0),
        24,
        "documentation (192.0.2.0/24)",
    ),
    (
        Ipv4Addr::new(192, 168, 0, 0),
        16,
        "private (192.168.0.0/16)",
    ),
    (
        Ipv4Addr::new(198, 18, 0, 0),
        15,
        "benchmarking (198.18.0.0/15)",
    ),
    (
        Ipv4Addr::new(198, 51, 100, 0),
        24,
        "documentation (198.51.100.0/24)",
    ),
    (
        Ipv4Addr::new(203, 0, 113, 0),
        24,
        "documentation (203.0.113.0/24)",
    ),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast (224.0.0.0/4)"),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "reserved (240.0.0.0/4)"),
];

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified (0.0.0.0)");
    }
    if ip.is_broadcast() {
        return Some("broadcast (255.255.255.255)");
    }
    let n = u32::from(ip);
    V4_RANGES
        .iter()
        .find(|(net, len, _)| {
            let mask = u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
            n & mask == u32::from(*net)
        })
        .map(|(_, _, reason)| *reason)
}

const V6_RANGES: &[(Ipv6Addr, u8, &str)] = &[
    (
        Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0),
        96,
        "IPv4-compatible (::/96)",
    ),
    (
        Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, 0, 0),
        96,
        "IPv4-translated (::ffff:0:0:0/96)",
    ),
    (
        Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        "local-use NAT64 (64:ff9b:1::/48)",
    ),
    (
        Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        "discard-only (100::/64)",
    ),
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        32,
        "Teredo (2001::/32)",
    ),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        "documentation (2001:db8::/32)",
    ),
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        "documentation (3fff::/20)",
    ),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        "unique-local (fc00::/7)",
    ),
    (
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
        "link-local (fe80::/10)",
    ),
    (
        Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        "site-local (fec0::/10)",
    ),
    (
        Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
        8,
        "multicast (ff00::/8)",
    ),
];

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net)
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("loopback (::1)");
    }
    let seg = ip.segments();
    // IPv4-mapped ::ffff:a.b.c.d: judge the IPv4 address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_reason(v4);
    }
    // NAT64 well-known prefix 64:ff9b::/96 embeds an IPv4 address in the last 32 bits.
    if in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        let v4 = Ipv4Addr::from(u32::from(seg[6]) << 16 | u32::from(seg[7]));
        return v4_reason(v4);
    }
    // 6to4 2002:aabb:ccdd::/48 embeds a.b.c.d in bits 16..48.
    if seg[0] == 0x2002 {
        let v4 = Ipv4Addr::from(u32::from(seg[1]) << 16 | u32::from(seg[2]));
        return v4_reason(v4);
    }
    V6_RANGES
        .iter()
        .find(|(net, len, _)| in_v6(ip, *net, *len))
        .map(|(_, _, reason)| *reason)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_accepts_http_and_https() {
        let t = parse_url("https://hooks.example.com/a/b?c=d").unwrap();
        assert!(t.is_https());
        assert_eq!(t.host(), "hooks.example.com");
        assert_eq!(t.port(), 443);
        assert_eq!(t.ip(), None);
        assert_eq!(t.uri().path(), "/a/b");

        let t = parse_url("http://Example.COM:8080").unwrap();
        assert!(!t.is_https());
        assert_eq!(t.host(), "example.com");
        assert_eq!(t.port(), 8080);

        let t = parse_url("HTTP://127.0.0.1/x").unwrap();
        assert_eq!(t.ip(), Some(ip("127.0.0.1")));
        assert_eq!(t.port(), 80);

        let t = parse_url("https://[2001:db8::1]:8443/").unwrap();
        assert_eq!(t.host(), "2001:db8::1");
        assert_eq!(t.ip(), Some(ip("2001:db8::1")));
        assert_eq!(t.port(), 8443);
    }

    #[test]
    fn parse_rejects() {
        use TargetError::*;
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(parse_url(&long), Err(TooLong));
        assert_eq!(parse_url("ftp://example.com/"), Err(UnsupportedScheme));
        assert!(parse_url("file:///etc/passwd").is_err());
        assert_eq!(parse_url("gopher://example.com/"), Err(UnsupportedScheme));
        assert_eq!(parse_url("https://user:pw@example.com/"), Err(UserInfo));
        assert_eq!(parse_url("https://user@example.com/"), Err(UserInfo));
        assert_eq!(parse_url("https://example.com/#frag"), Err(Fragment));
        assert!(matches!(parse_url("/relative/path"), Err(Invalid(_))));
        assert!(matches!(parse_url("example.com"), Err(Invalid(_))));
        assert!(matches!(
            parse_url("https://exa mple.com/"),
            Err(Invalid(_))
        ));
        assert!(matches!(
            parse_url("https://example.com/\n"),
            Err(Invalid(_))
        ));
        assert!(matches!(parse_url("https://exämple.com/"), Err(Invalid(_))));
        assert!(matches!(
            parse_url("https://example.com:0/"),
            Err(Invalid(_))
        ));
        assert!(matches!(
            parse_url("https://example.com:/"),
            Err(Invalid(_))
        ));
        assert!(matches!(
            parse_url("https://example.com:99999/"),
            Err(Invalid(_))
        ));
        assert!(matches!(
            parse_url("https://example.com:+80/"),
            Err(Invalid(_))
        ));
        assert!(matches!(
            parse_url("https://example.com:8a/"),
            Err(Invalid(_))
        ));
        assert!(matches!(parse_url("https://[::1/"), Err(Invalid(_))));
        assert!(matches!(
            parse_url("https://[example.com]/"),
            Err(Invalid(_))
        ));
        assert!(parse_url("https:///path").is_err());
        assert!(parse_url("").is_err());
        assert!(parse_url("https://example.com\\@127.0.0.1/").is_err());
    }

    fn refused(addr: &str) -> bool {
        forbidden_reason(ip(addr)).is_some()
    }

    #[test]
    fn ranges() {
        let forbidden = [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "198.19.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "3fff::1",
            "100::1",
            "2001::1",
            "64:ff9b:1::1",
            // IPv4-mapped, -compatible, NAT64 and 6to4 forms of refused IPv4 addresses.
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::ffff:100.64.0.1",
            "::ffff:0.0.0.0",
            "::127.0.0.1",
            "::ffff:0:7f00:1",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
        ];
        for a in forbidden {
            assert!(refused(a), "{a} should be refused");
        }
        let allowed = [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "192.169.0.1",
            "169.255.0.1",
            "198.17.255.255",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ];
        for a in allowed {
            assert!(
                !refused(a),
                "{a} should be allowed: {:?}",
                forbidden_reason(ip(a))
            );
        }
    }

    async fn check(url: &str, allow_private: bool) -> Result<Vec<SocketAddr>, TargetError> {
        check_target(&parse_url(url).unwrap(), allow_private).await
    }

    #[tokio::test]
    async fn check_literals() {
        for url in [
            "http://127.0.0.1/",
            "http://10.0.0.1:8080/",
            "http://172.16.5.4/",
            "http://192.168.0.10/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.1.1/",
            "http://0.0.0.0/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://192.0.2.1/",
            "http://198.51.100.1/",
            "http://203.0.113.1/",
            "http://[::1]/",
            "http://[::]/",
            "http://[fc00::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[ff02::1]/",
            "http://[2001:db8::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:192.168.0.1]/",
            "http://[::ffff:a9fe:a9fe]/",
        ] {
            let err = check(url, false).await.unwrap_err();
            assert!(
                matches!(err, TargetError::Forbidden { .. }),
                "{url}: {err:?}"
            );
            assert!(err.is_permanent());
        }
        let addrs = check("https://93.184.216.34:8443/hook", false)
            .await
            .unwrap();
        assert_eq!(addrs, vec!["93.184.216.34:8443".parse().unwrap()]);
        let addrs = check("https://[2606:4700::1111]/", false).await.unwrap();
        assert_eq!(addrs, vec!["[2606:4700::1111]:443".parse().unwrap()]);
    }

    #[tokio::test]
    async fn allow_private_lets_loopback_through() {
        let addrs = check("http://127.0.0.1:9000/", true).await.unwrap();
        assert_eq!(addrs, vec!["127.0.0.1:9000".parse().unwrap()]);
        let addrs = check("http://[::1]/", true).await.unwrap();
        assert_eq!(addrs, vec!["[::1]:80".parse().unwrap()]);
    }

    #[tokio::test]
    async fn check_names_resolving_to_loopback() {
        // Resolved by the system resolver without network access (/etc/hosts and
        // numeric forms). Odd numeric spellings of 127.0.0.1 that `Ipv4Addr` does not
        // parse still resolve to it through getaddrinfo, and must be refused.
        for url in ["http://localhost/", "http://2130706433/", "http://0x7f.1/"] {
            match check(url, false).await {
                Err(TargetError::Forbidden { .. }) => {}
                // A system without those resolver conventions may fail to resolve.
                Err(TargetError::Resolve { .. } | TargetError::NoAddress(_)) => {}
                other => panic!("{url}: {other:?}"),
            }
        }
    }
}
