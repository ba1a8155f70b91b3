//! One store suite, run against SQLite always and against PostgreSQL when
//! `TEST_DATABASE_URL` points at one (CI sets it to the local server).

mod common;

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use switchboard_model::{Channel, Direction, Message, MessageStatus};
use switchboard_store::{
    CancelOutcome, IdempotencyKey, InsertOutcome, ListQuery, NewMessage, Store, StoreOptions,
};

/// A store on a fresh database: a temporary SQLite file, or a new schema in the
/// PostgreSQL database of `TEST_DATABASE_URL`.
struct TestDb {
    store: Store,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&common::sqlite_url(&dir), StoreOptions::default())
        .await
        .expect("open sqlite");
    TestDb {
        store,
        _dir: Some(dir),
    }
}

async fn postgres() -> Option<TestDb> {
    let url = common::postgres_url().await?;
    let store = Store::open(&url, StoreOptions::default())
        .await
        .expect("open postgres schema");
    Some(TestDb { store, _dir: None })
}

/// Runs a test body on every backend available.
macro_rules! on_every_backend {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = super::sqlite().await;
                ($body)(db.store.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                match super::postgres().await {
                    Some(db) => ($body)(db.store.clone()).await,
                    None => eprintln!("TEST_DATABASE_URL is not set: PostgreSQL run skipped"),
                }
            }
        }
    };
}

fn message(tenant: &str, to: &str, text: &str) -> Message {
    let now = Utc::now();
    let mut message = Message::new(
        tenant,
        Direction::Outbound,
        Channel::Sms,
        to,
        text,
        MessageStatus::Queued,
        now,
    );
    message.from = Some("ACME".into());
    message.client_ref = Some("ref-1".into());
    message.metadata = BTreeMap::from([("k".to_owned(), "v".to_owned())]);
    message.segments = Some(1);
    message.encoding = Some(switchboard_model::text::Encoding::Gsm7);
    message.expires_at = Some(now + Duration::hours(1));
    message
}

fn new(message: Message) -> NewMessage {
    NewMessage {
        message,
        enqueue: true,
        idempotency: None,
    }
}

on_every_backend!(round_trip, |store: Store| async move {
    let sent = message("acme", "+14155550100", "hello there");
    let outcome = store
        .insert_message(new(sent.clone()))
        .await
        .expect("insert");
    assert_eq!(outcome, InsertOutcome::Created);
    let got = store
        .get_message("acme", sent.id.as_str())
        .await
        .expect("get")
        .expect("found");
    // Timestamps come back at microsecond precision.
    let mut expected = sent.clone();
    let trunc = |t: chrono::DateTime<Utc>| switchboard_store::from_micros(t.timestamp_micros());
    expected.created_at = trunc(expected.created_at);
    expected.updated_at = trunc(expected.updated_at);
    expected.expires_at = expected.expires_at.map(trunc);
    for e in expected.events.iter_mut().flatten() {
        e.at = trunc(e.at);
    }
    assert_eq!(got, expected);
    assert_eq!(store.outbox_depth().await.expect("depth"), 1);
});

on_every_backend!(tenants_do_not_see_each_other, |store: Store| async move {
    let m = message("acme", "+14155550100", "private");
    store.insert_message(new(m.clone())).await.expect("insert");
    assert!(
        store
            .get_message("other", m.id.as_str())
            .await
            .expect("get")
            .is_none()
    );
    let page = store
        .list_messages(
            "other",
            &ListQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert!(page.is_empty());
    assert_eq!(
        store
            .cancel_message("other", m.id.as_str(), None)
            .await
            .expect("cancel"),
        CancelOutcome::NotFound
    );
});

on_every_backend!(concurrent_writes_share_commits, |store: Store| async move {
    let mut tasks = Vec::new();
    for i in 0..300 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let m = message("acme", "+14155550100", &format!("burst {i}"));
            let id = m.id.clone();
            let outcome = store.insert_message(new(m)).await.expect("insert");
            assert_eq!(outcome, InsertOutcome::Created);
            id
        }));
    }
    for task in tasks {
        let id = task.await.expect("task");
        assert!(
            store.message_exists(&id).await.expect("exists"),
            "{id} lost"
        );
    }
    let batches = store.commit_count();
    assert!(
        batches < 300,
        "300 writes took {batches} commits: no grouping"
    );
});

on_every_backend!(idempotency_keys, |store: Store| async move {
    let key = |hash: &str| IdempotencyKey {
        key: "order-17".into(),
        request_hash: hash.into(),
        response: format!("response for {hash}"),
    };
    let first = message("acme", "+14155550100", "once");
    let mut request = new(first.clone());
    request.idempotency = Some(key("h1"));
    assert_eq!(
        store.insert_message(request).await.expect("first"),
        InsertOutcome::Created
    );

    let mut again = new(message("acme", "+14155550100", "once"));
    again.idempotency = Some(key("h1"));
    assert_eq!(
        store.insert_message(again.clone()).await.expect("replay"),
        InsertOutcome::Replayed {
            message_id: first.id.to_string(),
            response: "response for h1".into()
        }
    );
    assert!(
        !store
            .message_exists(&again.message.id)
            .await
            .expect("exists")
    );

    let mut other_body = new(message("acme", "+14155550100", "twice"));
    other_body.idempotency = Some(key("h2"));
    assert_eq!(
        store.insert_message(other_body).await.expect("reuse"),
        InsertOutcome::KeyReused {
            message_id: first.id.to_string()
        }
    );

    // The same key for another tenant is another key.
    let mut theirs = new(message("other", "+14155550100", "once"));
    theirs.idempotency = Some(key("h1"));
    assert_eq!(
        store.insert_message(theirs).await.expect("other"),
        InsertOutcome::Created
    );

    // Two requests with one new key in one batch: one is created, the other replays it.
    let (a, b) = (
        message("acme", "+1415555", "x"),
        message("acme", "+1415555", "x"),
    );
    let (mut ra, mut rb) = (new(a), new(b));
    ra.idempotency = Some(IdempotencyKey {
        key: "k2".into(),
        request_hash: "h".into(),
        response: "r".into(),
    });
    rb.idempotency = ra.idempotency.clone();
    let (oa, ob) = tokio::join!(store.insert_message(ra), store.insert_message(rb));
    let outcomes = [oa.expect("a"), ob.expect("b")];
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == InsertOutcome::Created)
            .count(),
        1
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, InsertOutcome::Replayed { .. }))
            .count(),
        1
    );
});

on_every_backend!(cancel_while_queued_only, |store: Store| async move {
    let m = message("acme", "+14155550100", "cancel me");
    store.insert_message(new(m.clone())).await.expect("insert");
    assert_eq!(
        store
            .cancel_message("acme", m.id.as_str(), Some("by API".into()))
            .await
            .expect("cancel"),
        CancelOutcome::Canceled
    );
    let got = store
        .get_message("acme", m.id.as_str())
        .await
        .expect("get")
        .expect("found");
    assert_eq!(got.status, MessageStatus::Canceled);
    let statuses: Vec<_> = got.events.iter().flatten().map(|e| e.status).collect();
    assert_eq!(statuses, [MessageStatus::Queued, MessageStatus::Canceled]);
    assert_eq!(store.outbox_depth().await.expect("depth"), 0);
    assert_eq!(
        store
            .cancel_message("acme", m.id.as_str(), None)
            .await
            .expect("again"),
        CancelOutcome::TooLate(MessageStatus::Canceled)
    );
});

on_every_backend!(listing_filters_and_pages, |store: Store| async move {
    let mut ids = Vec::new();
    for i in 0..7 {
        let mut m = message("acme", "+14155550100", &format!("note number {i}"));
        if i % 2 == 0 {
            m.to = "+14155550199".into();
            m.text = format!("invoice ready {i}");
        }
        ids.push(m.id.to_string());
        store.insert_message(new(m)).await.expect("insert");
    }
    store
        .insert_message(new(message("other", "+14155550100", "invoice elsewhere")))
        .await
        .expect("other");

    // Pages of 3, newest first, no overlaps, nothing missed.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let query = ListQuery {
            limit: 3,
            before_id: before.clone(),
            ..Default::default()
        };
        let page = store.list_messages("acme", &query).await.expect("page");
        if page.is_empty() {
            break;
        }
        before = page.last().map(|m| m.id.to_string());
        seen.extend(page.into_iter().map(|m| m.id.to_string()));
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    let to = ListQuery {
        to: Some("+14155550199".into()),
        limit: 50,
        ..Default::default()
    };
    assert_eq!(store.list_messages("acme", &to).await.expect("to").len(), 4);

    let q = ListQuery {
        q: Some("invoice".into()),
        limit: 50,
        ..Default::default()
    };
    let found = store.list_messages("acme", &q).await.expect("q");
    assert_eq!(found.len(), 4);
    assert!(
        found
            .iter()
            .all(|m| m.text.contains("invoice") && m.tenant == "acme")
    );

    let both = ListQuery {
        q: Some("invoice 4".into()),
        limit: 50,
        ..Default::default()
    };
    assert_eq!(
        store.list_messages("acme", &both).await.expect("q2").len(),
        1
    );

    let syntax = ListQuery {
        q: Some("\"unbalanced OR *".into()),
        limit: 50,
        ..Default::default()
    };
    assert!(
        store
            .list_messages("acme", &syntax)
            .await
            .expect("q3")
            .is_empty()
    );

    let status = ListQuery {
        status: Some(MessageStatus::Sent),
        limit: 50,
        ..Default::default()
    };
    assert!(
        store
            .list_messages("acme", &status)
            .await
            .expect("status")
            .is_empty()
    );

    let future = ListQuery {
        since: Some((Utc::now() + Duration::hours(1)).timestamp_micros()),
        limit: 50,
        ..Default::default()
    };
    assert!(
        store
            .list_messages("acme", &future)
            .await
            .expect("since")
            .is_empty()
    );
});

// ---- What the channels keep: notices, presence, parts, attachments, bridges. ----

/// Inserts `message`, takes it for sending through `connector`, and returns its id.
async fn sending(store: &Store, mut message: Message, connector: &'static str) -> String {
    message.metadata.insert("k".into(), "v".into());
    let id = message.id.to_string();
    store.insert_message(new(message)).await.expect("insert");
    let claimed = store
        .claim(switchboard_store::Claim {
            owner: "test".into(),
            lease: std::time::Duration::from_secs(60),
            limit: 100,
            channels: vec![Channel::Sms],
            decide: std::sync::Arc::new(move |m: &Message| switchboard_store::Dispatch::Send {
                connector: connector.into(),
                to: m.to.clone(),
                channel: m.channel,
            }),
        })
        .await
        .expect("claim");
    assert!(claimed.iter().any(|c| c.message.id.as_str() == id));
    id
}

fn accepted(upstream: &str, parts: &[&str]) -> switchboard_store::AttemptResult {
    switchboard_store::AttemptResult::Accepted {
        upstream_id: Some(upstream.into()),
        status: MessageStatus::Sent,
        metadata: Vec::new(),
        parts: parts.iter().map(|p| p.to_string()).collect(),
    }
}

fn report(upstream: &str, status: MessageStatus) -> switchboard_store::Report {
    switchboard_store::Report {
        connector: "up".into(),
        upstream_id: upstream.into(),
        status,
        error: (status == MessageStatus::Undelivered).then(|| ("UNDELIV".into(), "no".into())),
        at: Utc::now(),
    }
}

async fn status_of(store: &Store, id: &str) -> MessageStatus {
    store
        .get_message("acme", id)
        .await
        .expect("get")
        .expect("exists")
        .status
}

on_every_backend!(parts_roll_up_into_the_message, |store: Store| async move {
    // Every part delivered: the message is delivered only with the last one.
    let id = sending(&store, message("acme", "+14155550100", "long"), "up").await;
    store
        .record_outcome(&id, "up", accepted("p1", &["p1", "p2", "p3"]))
        .await
        .expect("outcome");
    store
        .report(report("p2", MessageStatus::Delivered))
        .await
        .expect("report");
    store
        .report(report("p1", MessageStatus::Delivered))
        .await
        .expect("report");
    assert_eq!(status_of(&store, &id).await, MessageStatus::Sent);
    store
        .report(report("p3", MessageStatus::Delivered))
        .await
        .expect("report");
    assert_eq!(status_of(&store, &id).await, MessageStatus::Delivered);

    // One part undelivered: the message is undelivered at once, with its code.
    let id = sending(&store, message("acme", "+14155550101", "long"), "up").await;
    store
        .record_outcome(&id, "up", accepted("q1", &["q1", "q2"]))
        .await
        .expect("outcome");
    store
        .report(report("q2", MessageStatus::Undelivered))
        .await
        .expect("report");
    let failed = store
        .get_message("acme", &id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(failed.status, MessageStatus::Undelivered);
    assert_eq!(failed.error.map(|e| e.code), Some("UNDELIV".to_owned()));

    // A part's receipt that arrives before the send outcome is kept and applied then.
    let id = sending(&store, message("acme", "+14155550102", "long"), "up").await;
    let early = store
        .report(report("r2", MessageStatus::Delivered))
        .await
        .expect("report");
    assert_eq!(early, switchboard_store::ReportOutcome::Kept);
    store
        .record_outcome(&id, "up", accepted("r1", &["r1", "r2"]))
        .await
        .expect("outcome");
    assert_eq!(status_of(&store, &id).await, MessageStatus::Sent);
    store
        .report(report("r1", MessageStatus::Delivered))
        .await
        .expect("report");
    assert_eq!(status_of(&store, &id).await, MessageStatus::Delivered);
});

on_every_backend!(
    receipts_are_matched_within_their_connector,
    |store: Store| async move {
        use switchboard_store::ReportOutcome::{Applied, Kept};
        // A receipt for `upstream` through `connector`.
        async fn through(
            store: &Store,
            connector: &str,
            upstream: &str,
            status: MessageStatus,
        ) -> switchboard_store::ReportOutcome {
            store
                .report(switchboard_store::Report {
                    connector: connector.into(),
                    ..report(upstream, status)
                })
                .await
                .expect("report")
        }

        // Two connectors give the same upstream id to two messages: a receipt through one
        // changes that connector's message only.
        let up = sending(&store, message("acme", "+14155550110", "one"), "up").await;
        let side = sending(&store, message("acme", "+14155550111", "two"), "side").await;
        for (id, connector) in [(&up, "up"), (&side, "side")] {
            store
                .record_outcome(id, connector, accepted("same-id", &[]))
                .await
                .expect("outcome");
        }
        let applied = through(&store, "side", "same-id", MessageStatus::Undelivered).await;
        assert_eq!(applied, Applied(side.clone()));
        assert_eq!(status_of(&store, &up).await, MessageStatus::Sent);
        assert_eq!(status_of(&store, &side).await, MessageStatus::Undelivered);
        let applied = through(&store, "up", "same-id", MessageStatus::Delivered).await;
        assert_eq!(applied, Applied(up.clone()));
        assert_eq!(status_of(&store, &up).await, MessageStatus::Delivered);

        // A receipt kept before its outcome waits for an outcome through its own connector,
        // and parts are matched the same way.
        let early = through(&store, "side", "part-2", MessageStatus::Delivered).await;
        assert_eq!(early, Kept);
        let long = sending(&store, message("acme", "+14155550112", "long"), "up").await;
        store
            .record_outcome(&long, "up", accepted("part-1", &["part-1", "part-2"]))
            .await
            .expect("outcome");
        through(&store, "up", "part-1", MessageStatus::Delivered).await;
        assert_eq!(status_of(&store, &long).await, MessageStatus::Sent);
        through(&store, "up", "part-2", MessageStatus::Delivered).await;
        assert_eq!(status_of(&store, &long).await, MessageStatus::Delivered);
    }
);

on_every_backend!(notices_for_a_channel_session, |store: Store| async move {
    store
        .register_notice_recipient("smpp:carrier1", "acme")
        .await
        .expect("register");
    store
        .register_notice_recipient("smpp:carrier1", "acme")
        .await
        .expect("again");
    let lease = std::time::Duration::from_secs(60);
    let day = std::time::Duration::from_secs(86_400);

    // A message received for the tenant: a notice.
    let mut inbound = message("acme", "+15550100", "hi from outside");
    inbound.direction = Direction::Inbound;
    inbound.status = MessageStatus::Received;
    inbound.events = Some(vec![switchboard_model::StatusEvent {
        status: MessageStatus::Received,
        at: inbound.created_at,
        detail: None,
    }]);
    let received_id = inbound.id.to_string();
    store
        .insert_message(NewMessage {
            message: inbound,
            enqueue: false,
            idempotency: None,
        })
        .await
        .expect("insert");
    // A message of another tenant: none.
    let mut other = message("globex", "+15550100", "not yours");
    other.direction = Direction::Inbound;
    other.status = MessageStatus::Received;
    store
        .insert_message(NewMessage {
            message: other,
            enqueue: false,
            idempotency: None,
        })
        .await
        .expect("insert");

    // A submitted message that asks for receipts: a notice at its final status only.
    let mut submitted = message("acme", "+14155550100", "receipt please");
    submitted
        .metadata
        .insert("notify".into(), "smpp:carrier1".into());
    let id = sending(&store, submitted, "up").await;
    store
        .record_outcome(&id, "up", accepted("u1", &[]))
        .await
        .expect("outcome");
    store
        .report(report("u1", MessageStatus::Delivered))
        .await
        .expect("report");

    let taken = store
        .take_notices("smpp:carrier1", 10, lease, day)
        .await
        .expect("take");
    let kinds: Vec<(String, String, MessageStatus)> = taken
        .iter()
        .map(|n| (n.kind.clone(), n.message.id.to_string(), n.message.status))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("received".to_owned(), received_id, MessageStatus::Received),
            ("status".to_owned(), id.clone(), MessageStatus::Delivered),
        ]
    );
    // Leased: not handed out again until done or the lease ends.
    assert!(
        store
            .take_notices("smpp:carrier1", 10, lease, day)
            .await
            .expect("take")
            .is_empty()
    );
    let ids: Vec<String> = taken.iter().map(|n| n.id.clone()).collect();
    store.notices_done(&ids).await.expect("done");

    // A lease that ran out hands the notice out again; an expired one is dropped.
    let mut again = message("acme", "+14155550103", "again");
    again
        .metadata
        .insert("notify".into(), "smpp:carrier1".into());
    let id = sending(&store, again, "up").await;
    store
        .record_outcome(&id, "up", accepted("u2", &[]))
        .await
        .expect("outcome");
    store
        .report(report("u2", MessageStatus::Undelivered))
        .await
        .expect("report");
    let first = store
        .take_notices("smpp:carrier1", 10, std::time::Duration::ZERO, day)
        .await
        .expect("take");
    assert_eq!(first.len(), 1);
    let second = store
        .take_notices("smpp:carrier1", 10, lease, day)
        .await
        .expect("take");
    assert_eq!(
        second.iter().map(|n| &n.id).collect::<Vec<_>>(),
        vec![&first[0].id]
    );
    assert_eq!(second[0].message.status, MessageStatus::Undelivered);
});

on_every_backend!(presence_is_kept_and_announced, |store: Store| async move {
    let subscription = store
        .create_subscription(
            "acme",
            "http://127.0.0.1:9/",
            &["presence.changed".to_owned()],
            "whsec_x",
        )
        .await
        .expect("subscribe");
    let row = |availability: &str, status: Option<&str>| switchboard_store::PresenceRow {
        tenant: "acme".into(),
        address: "xmpp:alice@localhost".into(),
        availability: availability.into(),
        status: status.map(str::to_owned),
        at: switchboard_store::from_micros(switchboard_store::to_micros(Utc::now())),
    };
    assert!(
        store
            .update_presence(row("away", Some("lunch")))
            .await
            .expect("update")
    );
    // The same again is no change, and no event.
    assert!(
        !store
            .update_presence(row("away", Some("lunch")))
            .await
            .expect("update")
    );
    let kept = store
        .get_presence("acme", "xmpp:alice@localhost")
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(
        (kept.availability.as_str(), kept.status.as_deref()),
        ("away", Some("lunch"))
    );
    assert!(
        store
            .get_presence("globex", "xmpp:alice@localhost")
            .await
            .expect("get")
            .is_none()
    );
    let due = store
        .claim_deliveries(
            Utc::now() + Duration::seconds(1),
            std::time::Duration::from_secs(30),
            10,
        )
        .await
        .expect("claim");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].subscription_id, subscription.id);
    assert_eq!(due[0].event_type, "presence.changed");
    let payload: serde_json::Value =
        serde_json::from_str(due[0].payload.as_deref().expect("payload")).expect("json");
    assert_eq!(payload["status"], "away");
    assert_eq!(payload["note"], "lunch");
});

on_every_backend!(attachments_replace_and_bridges, |store: Store| async move {
    let queued = message("acme", "+14155550100", "first text");
    let id = queued.id.to_string();
    store
        .put_attachments(
            &id,
            &[switchboard_store::AttachmentData {
                name: Some("a.pdf".into()),
                content_type: "application/pdf".into(),
                data: vec![0, 1, 2, 255],
            }],
        )
        .await
        .expect("attachments");
    store.insert_message(new(queued)).await.expect("insert");
    let got = store
        .get_attachment("acme", &id, 0)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(got.data, vec![0, 1, 2, 255]);
    assert!(
        store
            .get_attachment("globex", &id, 0)
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        store
            .get_attachment("acme", &id, 1)
            .await
            .expect("get")
            .is_none()
    );
    // Every attachment of a message in order (for sending), and their removal.
    let second = message("acme", "bob@example.org", "two files");
    let second_id = second.id.to_string();
    let parts = [
        switchboard_store::AttachmentData {
            name: Some("b.txt".into()),
            content_type: "text/plain".into(),
            data: b"b".to_vec(),
        },
        switchboard_store::AttachmentData {
            name: None,
            content_type: "image/png".into(),
            data: vec![0x89, b'P'],
        },
    ];
    store
        .put_attachments(&second_id, &parts)
        .await
        .expect("attachments");
    assert_eq!(
        store.attachments_of(&second_id).await.expect("all"),
        parts.to_vec()
    );
    store.delete_attachments(&second_id).await.expect("delete");
    assert!(
        store
            .attachments_of(&second_id)
            .await
            .expect("all")
            .is_empty()
    );
    assert_eq!(store.attachments_of(&id).await.expect("all").len(), 1);

    // Replaced while queued, with the SMS details of the new text.
    let outcome = store
        .replace_text("acme", &id, "ünïcödé ☃")
        .await
        .expect("replace");
    assert_eq!(outcome, CancelOutcome::Canceled);
    let replaced = store
        .get_message("acme", &id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(replaced.text, "ünïcödé ☃");
    assert_eq!(
        replaced.encoding,
        Some(switchboard_model::text::Encoding::Ucs2)
    );
    assert_eq!(
        store
            .replace_text("globex", &id, "x")
            .await
            .expect("replace"),
        CancelOutcome::NotFound
    );
    let sent_id = sending(&store, message("acme", "+14155550104", "gone"), "up").await;
    assert!(matches!(
        store
            .replace_text("acme", &sent_id, "late")
            .await
            .expect("replace"),
        CancelOutcome::TooLate(MessageStatus::Sending)
    ));

    let bridge = switchboard_store::Bridge {
        peer: "+14155550100".into(),
        ours: "+15550100".into(),
        tenant: "acme".into(),
        reply_to: "bob@example.org".into(),
        reply_from: Some("+14155550100".into()),
        thread: Some("<m1@example.org>".into()),
        message_id: id.clone(),
    };
    store.record_bridge(&bridge).await.expect("bridge");
    let week = std::time::Duration::from_secs(7 * 86_400);
    assert_eq!(
        store
            .find_bridge("+14155550100", "+15550100", week)
            .await
            .expect("find"),
        Some(bridge.clone())
    );
    assert_eq!(
        store
            .find_bridge("+15550100", "+14155550100", week)
            .await
            .expect("find"),
        None
    );
});

// ---- Hand-off: new messages straight to a dispatcher. ----

/// Sends everything through `up`, except messages to `+19995550000`, whose connector
/// is down.
fn up_unless_down() -> switchboard_store::Decide {
    std::sync::Arc::new(|m: &Message| {
        if m.to == "+19995550000" {
            switchboard_store::Dispatch::Wait(std::time::Duration::ZERO)
        } else {
            switchboard_store::Dispatch::Send {
                connector: "up".into(),
                to: m.to.clone(),
                channel: m.channel,
            }
        }
    })
}

fn claim_all() -> switchboard_store::Claim {
    switchboard_store::Claim {
        owner: "claimer".into(),
        lease: std::time::Duration::from_secs(60),
        limit: 100,
        channels: vec![Channel::Sms],
        decide: up_unless_down(),
    }
}

async fn statuses(store: &Store, id: &str) -> Vec<MessageStatus> {
    let message = store
        .get_message("acme", id)
        .await
        .expect("get")
        .expect("exists");
    message
        .events
        .unwrap_or_default()
        .iter()
        .map(|e| e.status)
        .collect()
}

on_every_backend!(
    new_messages_are_handed_off_to_an_intake,
    |store: Store| async move {
        use switchboard_store::{AttemptResult, Handoff, Intake};
        let (sink, mut handed) = tokio::sync::mpsc::unbounded_channel();
        store.set_intake(Some(Intake {
            owner: "intake".into(),
            lease: std::time::Duration::from_secs(60),
            channels: vec![Channel::Sms],
            decide: up_unless_down(),
            sink,
        }));
        let sendable = message("acme", "+14155550100", "now");
        let down = message("acme", "+19995550000", "connector down");
        let mut later = message("acme", "+14155550101", "later");
        later.send_at = Some(Utc::now() + Duration::hours(1));
        let ids: Vec<String> = [&sendable, &down, &later]
            .iter()
            .map(|m| m.id.to_string())
            .collect();
        for m in [sendable, down, later] {
            store.insert_message(new(m)).await.expect("insert");
        }

        // Only the message due now that the router sends is handed off, already `sending`.
        let Some(Handoff::Take(taken)) = handed.recv().await else {
            panic!("nothing handed off");
        };
        assert_eq!(taken.message.id.as_str(), ids[0]);
        assert_eq!(taken.attempt, 1);
        assert_eq!(taken.message.status, MessageStatus::Sending);
        assert_eq!(taken.message.connector.as_deref(), Some("up"));
        assert!(handed.try_recv().is_err(), "only one message is handed off");
        assert_eq!(
            statuses(&store, &ids[0]).await,
            [MessageStatus::Queued, MessageStatus::Sending]
        );

        // Its outbox row is leased: a claim takes the one left waiting, not it.
        let claimed = store.claim(claim_all()).await.expect("claim");
        assert!(
            claimed.is_empty(),
            "the waiting message is deferred, not taken"
        );
        assert_eq!(status_of(&store, &ids[1]).await, MessageStatus::Queued);

        // A retry leaves it to a claim, which takes it as the second attempt.
        let retry = AttemptResult::Retry {
            at: Utc::now(),
            code: "busy".into(),
            detail: "try again".into(),
        };
        store
            .record_outcome(&ids[0], "up", retry)
            .await
            .expect("retry");
        assert_eq!(status_of(&store, &ids[0]).await, MessageStatus::Queued);
        let claimed = store.claim(claim_all()).await.expect("claim");
        let ids_claimed: Vec<(&str, u32)> = claimed
            .iter()
            .map(|c| (c.message.id.as_str(), c.attempt))
            .collect();
        assert_eq!(ids_claimed, [(ids[0].as_str(), 2)]);

        // The outcome is applied once; a second one for the same attempt changes nothing.
        store
            .record_outcome(&ids[0], "up", accepted("u1", &[]))
            .await
            .expect("outcome");
        store
            .record_outcome(&ids[0], "up", accepted("u2", &[]))
            .await
            .expect("outcome");
        assert_eq!(
            statuses(&store, &ids[0]).await,
            [
                MessageStatus::Queued,
                MessageStatus::Sending,
                MessageStatus::Queued,
                MessageStatus::Sending,
                MessageStatus::Sent
            ]
        );
        let stored = store
            .get_message("acme", &ids[0])
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(stored.upstream_id.as_deref(), Some("u1"));
        store
            .report(report("u1", MessageStatus::Delivered))
            .await
            .expect("report");
        assert_eq!(status_of(&store, &ids[0]).await, MessageStatus::Delivered);

        // With the intake withdrawn, new messages wait for a claim.
        store.set_intake(None);
        let after = message("acme", "+14155550102", "after");
        let after_id = after.id.to_string();
        store.insert_message(new(after)).await.expect("insert");
        assert!(
            handed.try_recv().is_err(),
            "nothing handed off once withdrawn"
        );
        let claimed = store.claim(claim_all()).await.expect("claim");
        assert!(claimed.iter().any(|c| c.message.id.as_str() == after_id));
    }
);

/// SQLite indexes text in bulk: a search sees every message committed before it, also
/// those written before a restart and never searched for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_search_sees_every_committed_message() {
    async fn write(store: &Store, text: &str) {
        let sent = message("acme", "+14155550100", text);
        store.insert_message(new(sent)).await.expect("insert");
    }
    async fn found(store: &Store, words: &str) -> Vec<Message> {
        let query = ListQuery {
            q: Some(words.into()),
            limit: 100,
            ..Default::default()
        };
        store.list_messages("acme", &query).await.expect("search")
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let url = common::sqlite_url(&dir);
    {
        let store = Store::open(&url, StoreOptions::default())
            .await
            .expect("open");
        for n in 0..3 {
            write(&store, &format!("your parcel {n} is on its way")).await;
        }
        assert_eq!(found(&store, "parcel").await.len(), 3);
        write(&store, "parcel 3").await;
        write(&store, "unrelated").await;
        assert_eq!(found(&store, "parcel").await.len(), 4);
        // Written, never searched for, then the gateway stops.
        write(&store, "parcel 4").await;
    }
    let store = Store::open(&url, StoreOptions::default())
        .await
        .expect("reopen");
    write(&store, "parcel 5").await;
    let parcels = found(&store, "parcel").await;
    assert_eq!(parcels.len(), 6);
    assert!(parcels.iter().all(|m| m.text.contains("parcel")));
    assert_eq!(found(&store, "unrelated").await.len(), 1);
}
