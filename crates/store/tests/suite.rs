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
