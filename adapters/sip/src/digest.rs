//! HTTP digest authentication as SIP uses it (RFC 3261 section 22, RFC 7616 and RFC 8760
//! for SHA-256): answering a `401`/`407` challenge, and challenging and checking inbound
//! senders. `qop=auth` or no qop; MD5 and SHA-256 (not the `-sess` variants).

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use md5::Md5;
use sha2::{Digest, Sha256};

/// How long a nonce we hand out stays good.
const NONCE_LIFETIME_SECS: u64 = 300;

/// The hash of a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `MD5` (RFC 2617).
    Md5,
    /// `SHA-256` (RFC 7616, RFC 8760).
    Sha256,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// `MD5` or `SHA-256` (any case).
    pub fn parse(name: &str) -> Option<Algorithm> {
        if name.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if name.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    fn hash(self, data: &str) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data.as_bytes())),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data.as_bytes())),
        }
    }
}

/// A `WWW-Authenticate` or `Proxy-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `opaque`, echoed back.
    pub opaque: Option<String>,
    /// `algorithm` (MD5 when absent).
    pub algorithm: Algorithm,
    /// Whether `qop` offers `auth`.
    pub qop_auth: bool,
}

/// `Digest k=v, k="v", ...` → the lower-case keys with their unquoted values.
pub fn parse_params(value: &str) -> Option<HashMap<String, String>> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut val = String::new();
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut escaped = false;
            for c in chars.by_ref() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => break,
                    c => {
                        escaped = false;
                        val.push(c);
                    }
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                val.push(c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), val.trim().to_owned());
    }
    Some(params)
}

impl Challenge {
    /// Reads a challenge; None when it is not a digest challenge we can answer.
    pub fn parse(value: &str) -> Option<Challenge> {
        let params = parse_params(value)?;
        let algorithm = match params.get("algorithm") {
            Some(name) => Algorithm::parse(name)?,
            None => Algorithm::Md5,
        };
        Some(Challenge {
            realm: params.get("realm")?.clone(),
            nonce: params.get("nonce")?.clone(),
            opaque: params.get("opaque").cloned(),
            algorithm,
            qop_auth: params
                .get("qop")
                .is_some_and(|q| q.split(',').any(|q| q.trim().eq_ignore_ascii_case("auth"))),
        })
    }

    /// Picks the challenge to answer among several (SHA-256 before MD5, RFC 8760
    /// section 2.4).
    pub fn choose(values: &[String]) -> Option<Challenge> {
        let challenges: Vec<Challenge> =
            values.iter().filter_map(|v| Challenge::parse(v)).collect();
        challenges
            .iter()
            .find(|c| c.algorithm == Algorithm::Sha256)
            .or_else(|| challenges.first())
            .cloned()
    }

    /// The `Authorization` (or `Proxy-Authorization`) value answering this challenge.
    pub fn answer(
        &self,
        method: &str,
        uri: &str,
        username: &str,
        password: &str,
        cnonce: &str,
    ) -> String {
        let nc = "00000001";
        let response = compute(
            self.algorithm,
            username,
            &self.realm,
            password,
            method,
            uri,
            &self.nonce,
            self.qop_auth.then_some((nc, cnonce)),
        );
        let mut value = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", \
             response=\"{response}\", algorithm={}",
            quote(username),
            quote(&self.realm),
            quote(&self.nonce),
            self.algorithm.name()
        );
        if self.qop_auth {
            value.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
        }
        if let Some(opaque) = &self.opaque {
            value.push_str(&format!(", opaque=\"{}\"", quote(opaque)));
        }
        value
    }
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The digest `response` (RFC 7616 section 3.4.1).
#[allow(clippy::too_many_arguments)]
fn compute(
    algorithm: Algorithm,
    username: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    qop: Option<(&str, &str)>,
) -> String {
    let ha1 = algorithm.hash(&format!("{username}:{realm}:{password}"));
    let ha2 = algorithm.hash(&format!("{method}:{uri}"));
    match qop {
        Some((nc, cnonce)) => algorithm.hash(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")),
        None => algorithm.hash(&format!("{ha1}:{nonce}:{ha2}")),
    }
}

/// What checking an inbound `Authorization` came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The credentials are good.
    Good,
    /// Good credentials with an old nonce: challenge again with `stale=true`.
    Stale,
    /// Missing, unknown user, wrong password or unreadable: challenge.
    Bad,
}

/// Challenges inbound senders and checks their answers, with stateless nonces (a time
/// and a keyed hash of it).
pub struct Verifier {
    realm: String,
    algorithms: Vec<Algorithm>,
    users: HashMap<String, String>,
    secret: [u8; 32],
}

impl Verifier {
    /// A verifier for `realm` offering `algorithms` (in order) with (user name,
    /// password) pairs.
    pub fn new(
        realm: &str,
        algorithms: Vec<Algorithm>,
        users: impl IntoIterator<Item = (String, String)>,
    ) -> Verifier {
        Verifier {
            realm: realm.to_owned(),
            algorithms,
            users: users.into_iter().collect(),
            secret: rand::random(),
        }
    }

    /// The realm of this verifier's challenges.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    fn nonce_at(&self, secs: u64) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.secret);
        hasher.update(secs.to_be_bytes());
        format!("{secs:x}.{}", &hex::encode(hasher.finalize())[..32])
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// The `WWW-Authenticate` values of a `401`, one per algorithm offered.
    pub fn challenges(&self, stale: bool) -> Vec<String> {
        let nonce = self.nonce_at(Self::now());
        self.algorithms
            .iter()
            .map(|algorithm| {
                format!(
                    "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{}",
                    quote(&self.realm),
                    algorithm.name(),
                    if stale { ", stale=true" } else { "" }
                )
            })
            .collect()
    }

    /// Checks an `Authorization` value of a request with `method` to `request_uri` (as
    /// written on the request line: the digest `uri` must repeat it, RFC 2617 section
    /// 3.2.2.5, so an answer cannot be replayed on a request to another address).
    pub fn check(&self, authorization: Option<&str>, method: &str, request_uri: &str) -> Verdict {
        let Some(params) = authorization.and_then(parse_params) else {
            return Verdict::Bad;
        };
        let get = |k: &str| params.get(k).map(String::as_str);
        let (Some(username), Some(realm), Some(nonce), Some(uri), Some(response)) = (
            get("username"),
            get("realm"),
            get("nonce"),
            get("uri"),
            get("response"),
        ) else {
            return Verdict::Bad;
        };
        let Some(algorithm) = Algorithm::parse(get("algorithm").unwrap_or("MD5"))
            .filter(|a| self.algorithms.contains(a))
        else {
            return Verdict::Bad;
        };
        let Some(password) = self.users.get(username) else {
            return Verdict::Bad;
        };
        if realm != self.realm || uri != request_uri {
            return Verdict::Bad;
        }
        // The nonce must be one of ours.
        let Some(secs) = nonce
            .split_once('.')
            .and_then(|(t, _)| u64::from_str_radix(t, 16).ok())
        else {
            return Verdict::Bad;
        };
        if !same(&self.nonce_at(secs), nonce) {
            return Verdict::Bad;
        }
        let qop = match get("qop") {
            Some(q) if q.eq_ignore_ascii_case("auth") => match (get("nc"), get("cnonce")) {
                (Some(nc), Some(cnonce)) => Some((nc, cnonce)),
                _ => return Verdict::Bad,
            },
            Some(_) => return Verdict::Bad,
            None => None,
        };
        let expected = compute(
            algorithm, username, realm, password, method, uri, nonce, qop,
        );
        if !same(&expected, &response.to_ascii_lowercase()) {
            return Verdict::Bad;
        }
        if Self::now().saturating_sub(secs) > NONCE_LIFETIME_SECS {
            return Verdict::Stale;
        }
        Verdict::Good
    }
}

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_2617_md5_example() {
        // RFC 2617 section 3.5, with the SIP method in place of GET.
        let response = compute(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some(("00000001", "0a4f113b")),
        );
        assert_eq!(response, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn rfc_7616_sha256_example() {
        let response = compute(
            Algorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            Some(("00000001", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")),
        );
        assert_eq!(
            response,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn a_verifier_takes_its_own_challenge_answered() {
        let verifier = Verifier::new(
            "gw",
            vec![Algorithm::Sha256, Algorithm::Md5],
            [("alice".into(), "secret".into())],
        );
        for value in verifier.challenges(false) {
            let challenge = Challenge::parse(&value).expect("challenge");
            let good = challenge.answer("MESSAGE", "sip:bob@gw", "alice", "secret", "c1");
            assert_eq!(
                verifier.check(Some(&good), "MESSAGE", "sip:bob@gw"),
                Verdict::Good
            );
            let bad = challenge.answer("MESSAGE", "sip:bob@gw", "alice", "wrong", "c1");
            assert_eq!(
                verifier.check(Some(&bad), "MESSAGE", "sip:bob@gw"),
                Verdict::Bad
            );
            let other = challenge.answer("MESSAGE", "sip:bob@gw", "mallory", "secret", "c1");
            assert_eq!(
                verifier.check(Some(&other), "MESSAGE", "sip:bob@gw"),
                Verdict::Bad
            );
            // Good credentials for one Request-URI do not open another.
            assert_eq!(
                verifier.check(Some(&good), "MESSAGE", "sip:eve@gw"),
                Verdict::Bad
            );
            // Nor do they open another realm's verifier.
            let elsewhere = Verifier::new(
                "other",
                vec![challenge.algorithm],
                [("alice".into(), "secret".into())],
            );
            assert_eq!(
                elsewhere.check(Some(&good), "MESSAGE", "sip:bob@gw"),
                Verdict::Bad
            );
        }
        assert_eq!(verifier.check(None, "MESSAGE", "x"), Verdict::Bad);
        assert_eq!(
            verifier.check(Some("Digest garbage"), "MESSAGE", "x"),
            Verdict::Bad
        );
        let forged =
            "Digest username=\"alice\", realm=\"gw\", nonce=\"1.00\", uri=\"x\", response=\"y\"";
        assert_eq!(verifier.check(Some(forged), "MESSAGE", "x"), Verdict::Bad);
    }

    #[test]
    fn prefers_sha256() {
        let values = vec![
            "Digest realm=\"r\", nonce=\"n\", algorithm=MD5".to_owned(),
            "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256, qop=\"auth,auth-int\"".to_owned(),
        ];
        let chosen = Challenge::choose(&values).expect("one");
        assert_eq!(chosen.algorithm, Algorithm::Sha256);
        assert!(chosen.qop_auth);
    }
}
