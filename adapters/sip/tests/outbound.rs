//! Outbound MESSAGEs to Kamailio (a SIP server we did not write), configured as a user
//! agent that answers by user and logs what arrived, and as an outbound proxy in front
//! of it: the body arrives, and the send outcome follows the answer, digest challenges
//! (401 from the user agent, 407 from the proxy; MD5 and SHA-256) included.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use chrono::Utc;
use common::*;
use switchboard_adapter::SendOutcome;
use switchboard_model::{Channel, Direction, Message, MessageStatus};

fn outbound(to: &str, text: &str) -> Message {
    let mut message = Message::new(
        "acme",
        Direction::Outbound,
        Channel::Sip,
        to,
        text,
        MessageStatus::Sending,
        Utc::now(),
    );
    message.from = Some("sip:support@gw.example.test".into());
    message
}

fn accepted(outcome: &SendOutcome) -> (MessageStatus, String) {
    match outcome {
        SendOutcome::Accepted {
            status,
            upstream_id: Some(id),
            metadata,
            ..
        } => {
            assert!(
                metadata.iter().any(|(k, v)| k == "sip.call_id" && v == id),
                "{metadata:?}"
            );
            assert!(
                metadata.iter().any(|(k, _)| k == "sip.cseq"),
                "{metadata:?}"
            );
            (*status, id.clone())
        }
        other => panic!("not accepted: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kamailio_answers_decide_the_outcome() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ua, ua_addr) = kamailio(dir.path(), "kamailio-ua.cfg", "MD5");
    let channel = start(&config(""));
    let adapter = &channel.adapter;

    let outcome = adapter
        .send(&outbound(&format!("sip:delivered@{ua_addr}"), "Grüße, Bob"))
        .await;
    let (status, call_id) = accepted(&outcome);
    assert_eq!(status, MessageStatus::Delivered);
    let line = ua.wait_for(&format!("call_id={call_id}"), Duration::from_secs(10));
    assert!(line.contains("body=[Grüße, Bob]"), "{line}");
    assert!(line.contains("type=text/plain;charset=UTF-8"), "{line}");
    assert!(line.contains("proto=udp"), "{line}");

    let outcome = adapter
        .send(&outbound(
            &format!("sip:accepted@{ua_addr}"),
            "to the next hop",
        ))
        .await;
    assert_eq!(accepted(&outcome).0, MessageStatus::Sent);

    let outcome = adapter
        .send(&outbound(&format!("sip:busy@{ua_addr}"), "later"))
        .await;
    match outcome {
        SendOutcome::Transient {
            code, retry_after, ..
        } => {
            assert_eq!(code, "503");
            assert_eq!(retry_after, Some(Duration::from_secs(30)));
        }
        other => panic!("503 is transient: {other:?}"),
    }

    let outcome = adapter
        .send(&outbound(&format!("sip:nobody@{ua_addr}"), "lost"))
        .await;
    match outcome {
        SendOutcome::Permanent { code, .. } => assert_eq!(code, "404"),
        other => panic!("404 is permanent: {other:?}"),
    }

    // Challenged without credentials: the 401 is the outcome.
    let outcome = adapter
        .send(&outbound(&format!("sip:secret@{ua_addr}"), "no creds"))
        .await;
    match outcome {
        SendOutcome::Permanent { code, .. } => assert_eq!(code, "401"),
        other => panic!("an unanswerable 401 is permanent: {other:?}"),
    }

    // A body too large for UDP goes over TCP.
    let long = "x".repeat(3000);
    let outcome = adapter
        .send(&outbound(&format!("sip:delivered@{ua_addr}"), &long))
        .await;
    let (status, call_id) = accepted(&outcome);
    assert_eq!(status, MessageStatus::Delivered);
    let line = ua.wait_for(&format!("call_id={call_id}"), Duration::from_secs(10));
    assert!(
        line.contains("proto=tcp") && line.contains("length=3000"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn digest_challenges_are_answered_md5_and_sha256() {
    let dir = tempfile::tempdir().expect("tempdir");
    for algorithm in ["MD5", "SHA-256"] {
        let (ua, ua_addr) = kamailio(dir.path(), "kamailio-ua.cfg", algorithm);
        let channel = start(&config("username = \"support\"\npassword = \"s3cret\""));
        let outcome = channel
            .adapter
            .send(&outbound(
                &format!("sip:secret@{ua_addr}"),
                &format!("behind {algorithm}"),
            ))
            .await;
        let (status, call_id) = accepted(&outcome);
        assert_eq!(status, MessageStatus::Delivered, "{algorithm}");
        ua.wait_for(
            &format!("UA challenged call_id={call_id}"),
            Duration::from_secs(10),
        );
        let line = ua.wait_for(
            &format!("UA MESSAGE user=secret call_id={call_id}"),
            Duration::from_secs(10),
        );
        assert!(
            line.contains(&format!("body=[behind {algorithm}]")),
            "{line}"
        );
        // The answered request is the same Call-ID with the next CSeq.
        match outcome {
            SendOutcome::Accepted { metadata, .. } => {
                assert!(
                    metadata.contains(&("sip.cseq".into(), "2".into())),
                    "{metadata:?}"
                )
            }
            other => panic!("{other:?}"),
        }
        let channel = start(&config("username = \"support\"\npassword = \"wrong\""));
        let outcome = channel
            .adapter
            .send(&outbound(
                &format!("sip:secret@{ua_addr}"),
                "wrong password",
            ))
            .await;
        assert!(
            matches!(&outcome, SendOutcome::Permanent { code, .. } if code == "401"),
            "{algorithm}: a second challenge is not answered again: {outcome:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn through_an_outbound_proxy_that_asks_for_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ua, ua_addr) = kamailio(dir.path(), "kamailio-ua.cfg", "MD5");
    let (proxy, proxy_addr) = kamailio(dir.path(), "kamailio-proxy.cfg", "MD5");
    let channel = start(&config(&format!(
        "outbound_proxy = \"{proxy_addr}\"\nusername = \"support\"\npassword = \"pr0xy\""
    )));
    let outcome = channel
        .adapter
        .send(&outbound(
            &format!("sip:guarded@{ua_addr}"),
            "via the proxy",
        ))
        .await;
    let (status, call_id) = accepted(&outcome);
    assert_eq!(status, MessageStatus::Delivered);
    proxy.wait_for(
        &format!("PROXY challenged call_id={call_id}"),
        Duration::from_secs(10),
    );
    proxy.wait_for(
        &format!("PROXY relays call_id={call_id}"),
        Duration::from_secs(10),
    );
    let line = ua.wait_for(&format!("call_id={call_id}"), Duration::from_secs(10));
    assert!(line.contains("body=[via the proxy]"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_peer_gets_retransmissions_then_the_send_is_transient() {
    // Our own silent UDP socket: it counts the copies timer E sends.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let silent_addr = silent.local_addr().expect("addr");
    let channel = start(&config("t1_ms = 20\nt2_ms = 80"));
    let message = outbound(&format!("sip:nobody@{silent_addr}"), "anyone?");
    let adapter = channel.adapter.clone();
    let send = tokio::spawn(async move { adapter.send(&message).await });
    let copies = tokio::task::spawn_blocking(move || {
        let mut copies = Vec::new();
        let mut buf = vec![0u8; 4096];
        while let Ok((n, _)) = silent.recv_from(&mut buf) {
            copies.push(buf[..n].to_vec());
            if copies.len() == 4 {
                break;
            }
        }
        copies
    })
    .await
    .expect("counted");
    assert_eq!(copies.len(), 4, "timer E retransmits");
    assert!(copies.iter().all(|c| c == &copies[0]), "identical copies");
    match send.await.expect("send") {
        SendOutcome::Transient { code, .. } => assert_eq!(code, "408"),
        other => panic!("timer F makes it transient: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn our_connector_to_our_listener_with_sha256_digest() {
    let listener = start(&config(
        "[auth]\nrealm = \"gw.example.test\"\nusers = [{ username = \"peer\", password = \"pw\" }]",
    ));
    let sender = start(&config("username = \"peer\"\npassword = \"pw\""));
    let outcome = sender
        .adapter
        .send(&outbound(
            &format!("sip:+15550199@{}", listener.addr),
            "loop",
        ))
        .await;
    assert_eq!(accepted(&outcome).0, MessageStatus::Delivered);
    let taken = listener.recorder.taken();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].to, "+15550199");
    assert_eq!(taken[0].from, "sip:support@gw.example.test");
    assert_eq!(taken[0].text, "loop");
}
