//! The parsing path the fuzz target `sip_parse` drives, over a corpus of nasty inputs:
//! no panic, whatever the bytes.

const BASE: &str = "MESSAGE sip:bob@gw.example.test SIP/2.0\r\n\
    Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
    From: <sip:alice@example.org>;tag=1\r\nTo: <sip:bob@gw.example.test>\r\n\
    Call-ID: x\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi";

#[test]
fn nasty_inputs_do_not_panic() {
    let mut corpus: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\r\n\r\n".to_vec(),
        b"SIP/2.0".to_vec(),
        b"SIP/2.0 \r\n\r\n".to_vec(),
        b"SIP/2.0 200\r\nWWW-Authenticate: Digest\r\n\r\n".to_vec(),
        b"SIP/2.0 401 X\r\nWWW-Authenticate: Digest realm=\"\\\r\n\r\n".to_vec(),
        b"SIP/2.0 401 X\r\nProxy-Authenticate: Digest ,,,=,=\"\r\n\r\n".to_vec(),
        b"MESSAGE  SIP/2.0\r\n\r\n".to_vec(),
        b"MESSAGE sip: SIP/2.0\r\nVia: \r\nFrom: <\r\nTo: >\r\nCall-ID:\r\nCSeq: 1\r\n\r\n"
            .to_vec(),
        b"MESSAGE sip:a@b SIP/2.0\r\nl: 99999999999999999999999\r\n\r\n".to_vec(),
        b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 18446744073709551615\r\n\r\n".to_vec(),
        vec![0xff; 70_000],
        [
            b"MESSAGE sip:a@b SIP/2.0\r\n".as_slice(),
            &[b'X'; 20_000],
            b"\r\n\r\n",
        ]
        .concat(),
    ];
    let base = BASE.as_bytes();
    // Every prefix, and every position with a byte flipped to a delimiter.
    for end in 0..base.len() {
        corpus.push(base[..end].to_vec());
    }
    for (i, delimiter) in (0..base.len()).zip(
        [b'\r', b'\n', b':', b'<', b'>', b';', b'"', b'\0', 0xc3]
            .iter()
            .cycle(),
    ) {
        let mut mutated = base.to_vec();
        mutated[i] = *delimiter;
        corpus.push(mutated);
    }
    for header in [
        "Authorization: Digest username=\"a\", realm=\"gw.example.test\", nonce=\"zz.00\", uri=\"\", response=\"\"",
        "Authorization: Digest username=\"alice\", realm=\"gw.example.test\", nonce=\"ffffffffffffffff.0\", uri=\"x\", response=\"0\", qop=auth",
        "Authorization: Digest =",
        "Max-Forwards: -1",
        "CSeq: 4294967296 MESSAGE",
        "Via: ,,,,",
        "From: \"unterminated <sip:a@b>;tag=",
        "To: <sip:[::1>",
    ] {
        corpus.push(
            BASE.replace("Call-ID: x\r\n", &format!("Call-ID: x\r\n{header}\r\n"))
                .into_bytes(),
        );
    }
    corpus.push(
        BASE.replace("text/plain", "message/cpim")
            .replace("\r\n\r\nhi", "\r\n\r\nFrom:\n\nContent-Type:\n\n")
            .into_bytes(),
    );
    for input in &corpus {
        switchboard_sip::parse_for_fuzzing(input);
    }
}
