//! Inbound MESSAGEs from sipsak (a SIP client we did not write) over UDP and TCP, and
//! the answers to bad input, against the SIP service with a recording core.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn sipsak_message_over_udp_and_tcp_is_stored_then_answered_200() {
    let channel = start(&config(""));
    let dir = tempfile::tempdir().expect("tempdir");
    for (transport, body) in [("udp", "hello over udp"), ("tcp", "hello over tcp")] {
        let uri = format!("sip:+15550100@{}", channel.addr);
        let file = request_file(
            dir.path(),
            transport,
            &sipsak_request(&uri, &format!("sipsak-{}@example.org", body.len()), body),
        );
        let (code, out) = sipsak(&[
            "-f",
            file.to_str().expect("path"),
            "-s",
            &uri,
            "-E",
            transport,
        ])
        .await;
        assert_eq!(code, 0, "sipsak over {transport} did not get 200:\n{out}");
        assert!(out.contains("200 OK"), "{out}");
        let taken = channel.recorder.taken();
        let inbound = taken.last().expect("stored");
        assert_eq!(inbound.text, body);
        assert_eq!(inbound.to, "+15550100", "a number at our address is SMS");
        assert_eq!(inbound.from, "sip:alice@example.org");
        assert_eq!(inbound.tenant, "acme");
        let meta = |k: &str| {
            inbound
                .metadata
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            meta("sip.call_id"),
            Some(format!("sipsak-{}@example.org", body.len()))
        );
        assert_eq!(meta("sip.cseq").as_deref(), Some("7"));
        assert_eq!(meta("sip.from_tag").as_deref(), Some("sipsak1"));
    }
    assert_eq!(channel.recorder.taken().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retransmission_is_answered_again_but_stored_once() {
    let channel = start(&config(""));
    let request = message(
        "sip:bob@gw.example.test",
        "z9hG4bKretrans1",
        "",
        "text/plain",
        "once",
    );
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut answers = Vec::new();
    for _ in 0..3 {
        socket
            .send_to(request.as_bytes(), channel.addr)
            .expect("send");
        let mut buf = vec![0u8; 4096];
        let (n, _) = socket.recv_from(&mut buf).expect("answer");
        answers.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(status_of(&answers[0]), 200, "{}", answers[0]);
    assert!(
        answers.iter().all(|a| a == &answers[0]),
        "the same final response each time"
    );
    assert_eq!(channel.recorder.taken().len(), 1);
    assert_eq!(channel.recorder.taken()[0].to, "sip:bob@gw.example.test");
}

#[tokio::test(flavor = "multi_thread")]
async fn what_we_cannot_take_gets_a_clear_answer() {
    let channel = start(&config("max_body_bytes = 4000"));
    let to = "sip:bob@gw.example.test";
    let cases: Vec<(&str, String, u16, Option<&str>)> = vec![
        (
            "missing Call-ID",
            message(to, "z9hG4bKc1", "", "text/plain", "x")
                .replace("Call-ID: z9hG4bKc1@example.org\r\n", ""),
            400,
            None,
        ),
        (
            "missing From",
            message(to, "z9hG4bKc1b", "", "text/plain", "x")
                .replace("From: <sip:alice@example.org>;tag=a1\r\n", ""),
            400,
            None,
        ),
        (
            "Content-Length beyond the datagram",
            message(to, "z9hG4bKc2", "", "text/plain", "x")
                .replace("Content-Length: 1", "Content-Length: 99"),
            400,
            None,
        ),
        (
            "INVITE",
            message(to, "z9hG4bKc3", "", "text/plain", "x")
                .replace("MESSAGE sip", "INVITE sip")
                .replace("1 MESSAGE", "1 INVITE"),
            405,
            Some("Allow: MESSAGE, OPTIONS"),
        ),
        (
            "Max-Forwards 0",
            message(to, "z9hG4bKc4", "", "text/plain", "x")
                .replace("Max-Forwards: 70", "Max-Forwards: 0"),
            483,
            None,
        ),
        (
            "a body over the UDP limit",
            message(to, "z9hG4bKc5", "", "text/plain", &"x".repeat(1400)),
            413,
            None,
        ),
        (
            "an unsupported content type",
            message(to, "z9hG4bKc6", "", "application/json", "{}"),
            415,
            Some("Accept: text/plain, message/cpim"),
        ),
        (
            "an unknown recipient",
            message(
                "sip:unknown@gw.example.test",
                "z9hG4bKc7",
                "",
                "text/plain",
                "x",
            ),
            404,
            None,
        ),
        (
            "a store that fails",
            message(
                "sip:broken@gw.example.test",
                "z9hG4bKc8",
                "",
                "text/plain",
                "x",
            ),
            503,
            Some("Retry-After: 5"),
        ),
        (
            "OPTIONS",
            message(to, "z9hG4bKc9", "", "text/plain", "")
                .replace("MESSAGE sip", "OPTIONS sip")
                .replace("1 MESSAGE", "1 OPTIONS"),
            200,
            Some("Accept: text/plain, message/cpim"),
        ),
    ];
    for (what, request, status, header) in cases {
        let answer = udp_exchange(channel.addr, request.as_bytes());
        assert_eq!(status_of(&answer), status, "{what}: {answer}");
        if let Some(header) = header {
            assert!(
                answer.contains(header),
                "{what}: {header} missing in {answer}"
            );
        }
    }
    assert!(
        channel.recorder.taken().is_empty(),
        "none of these was stored"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cpim_bodies_give_their_text_and_headers() {
    let channel = start(&config(""));
    let cpim = "From: <sip:alice@example.org>\r\nTo: <sip:bob@gw.example.test>\r\n\
                DateTime: 2026-11-22T10:00:00Z\r\n\r\n\
                Content-Type: text/plain; charset=utf-8\r\n\r\nwrapped text";
    let request = message(
        "sip:bob@gw.example.test",
        "z9hG4bKcpim",
        "",
        "message/cpim",
        cpim,
    );
    let answer = udp_exchange(channel.addr, request.as_bytes());
    assert_eq!(status_of(&answer), 200, "{answer}");
    let taken = channel.recorder.taken();
    assert_eq!(taken[0].text, "wrapped text");
    assert!(
        taken[0]
            .metadata
            .contains(&("sip.cpim.datetime".into(), "2026-11-22T10:00:00Z".into()))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_datagrams_and_garbage_streams_leave_the_listener_healthy() {
    let channel = start(&config(""));
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    for datagram in [
        &b"\x00\x01\x02garbage"[..],
        b"MESSAGE\r\n\r\n",
        b"SIP/2.0 999999 Nope\r\n\r\n",
        b"MESSAGE sip:x SIP/2.0\r\nVia: \r\nContent-Length: -1\r\n\r\n",
        &[0xff; 1500],
    ] {
        junk.send_to(datagram, channel.addr).expect("send junk");
    }
    // A garbage TCP stream: no end of headers within the limit. The listener closes it.
    let mut stream = TcpStream::connect(channel.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let garbage = vec![b'A'; 20_000];
    let _ = stream.write_all(&garbage);
    let mut rest = Vec::new();
    let closed = stream.read_to_end(&mut rest);
    assert!(
        closed.is_ok() || rest.is_empty(),
        "the connection is closed, not hung"
    );
    // A second connection with an unreadable Content-Length.
    let mut stream = TcpStream::connect(channel.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let bad = message(
        "sip:bob@gw.example.test",
        "z9hG4bKtcpbad",
        "",
        "text/plain",
        "x",
    )
    .replace("Content-Length: 1", "Content-Length: lots");
    stream.write_all(bad.as_bytes()).expect("write");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert_eq!(status_of(&answer), 400, "{answer}");
    // sipsak still gets through, over both transports.
    let dir = tempfile::tempdir().expect("tempdir");
    for transport in ["udp", "tcp"] {
        let uri = format!("sip:+15550101@{}", channel.addr);
        let file = request_file(
            dir.path(),
            transport,
            &sipsak_request(&uri, "still-here@example.org", "still here"),
        );
        let (code, out) = sipsak(&[
            "-f",
            file.to_str().expect("path"),
            "-s",
            &uri,
            "-E",
            transport,
        ])
        .await;
        assert_eq!(code, 0, "{transport}: {out}");
    }
    assert_eq!(channel.recorder.taken().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn inbound_digest_authentication_with_sipsak() {
    let channel = start(&config(
        // sipsak reads only the first challenge and knows only MD5.
        "[auth]\nrealm = \"gw.example.test\"\nalgorithms = [\"MD5\"]\n\
         users = [{ username = \"alice\", password = \"s3cret\" }]",
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let uri = format!("sip:+15550102@{}", channel.addr);
    let file = request_file(
        dir.path(),
        "auth",
        &sipsak_request(&uri, "auth@example.org", "authenticated"),
    );
    let path = file.to_str().expect("path");
    let (code, out) = sipsak(&["-f", path, "-s", &uri, "-u", "alice", "-a", "wrong"]).await;
    assert_ne!(code, 0, "a wrong password is refused:\n{out}");
    assert!(out.contains("401"), "{out}");
    assert!(channel.recorder.taken().is_empty());
    let (code, out) = sipsak(&["-f", path, "-s", &uri, "-u", "alice", "-a", "s3cret"]).await;
    assert_eq!(code, 0, "the right password is taken:\n{out}");
    assert_eq!(channel.recorder.taken()[0].text, "authenticated");
}
