//! Webhook subscriptions, claims and attempts, on SQLite always and on PostgreSQL when
//! `TEST_DATABASE_URL` points at one. Deliveries are made by the group-commit writer in
//! production; here most are inserted with plain SQL so each case sets up exactly the
//! rows it needs, and one case checks the writer's fan-out against our filters.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use switchboard_model::{Channel, Direction, Message, MessageStatus};
use switchboard_store::{
    AfterAttempt, AttemptRecord, DeliveryAttempt, DeliveryState, NewMessage, Store, StoreOptions,
    from_micros, to_micros,
};

/// A second connection to the test database, for setting up rows directly.
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

macro_rules! on_raw {
    ($raw:expr, $p:ident => $body:expr) => {
        match $raw {
            Raw::Sqlite($p) => $body,
            Raw::Postgres($p) => $body,
        }
    };
}

/// A store on a fresh database (a temporary SQLite file, or a new schema in the
/// PostgreSQL database of `TEST_DATABASE_URL`), and a raw pool on the same database.
struct TestDb {
    store: Store,
    raw: Raw,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = common::sqlite_url(&dir);
    let store = Store::open(&url, StoreOptions::default())
        .await
        .expect("open sqlite");
    let raw = sqlx::SqlitePool::connect(&url).await.expect("raw sqlite");
    TestDb {
        store,
        raw: Raw::Sqlite(raw),
        _dir: Some(dir),
    }
}

async fn postgres() -> Option<TestDb> {
    let url = common::postgres_url().await?;
    let store = Store::open(&url, StoreOptions::default())
        .await
        .expect("open postgres schema");
    let raw = sqlx::PgPool::connect(&url).await.expect("raw postgres");
    Some(TestDb {
        store,
        raw: Raw::Postgres(raw),
        _dir: None,
    })
}

/// Runs a test body on every backend available.
macro_rules! on_every_backend {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = super::sqlite().await;
                ($body)(db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                match super::postgres().await {
                    Some(db) => ($body)(db).await,
                    None => eprintln!("TEST_DATABASE_URL is not set: PostgreSQL run skipped"),
                }
            }
        }
    };
}

fn events(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Inserts a pending delivery as the writer's fan-out does; returns its id.
async fn insert_delivery(
    db: &TestDb,
    subscription: &str,
    tenant: &str,
    message_id: &str,
    event_type: &str,
    event_at: DateTime<Utc>,
) -> String {
    let event_id = format!("evt_{}", uuid::Uuid::now_v7().simple());
    let id = format!("{event_id}:{subscription}");
    let at = to_micros(event_at);
    on_raw!(&db.raw, pool => {
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, subscription_id, tenant, event_id, event_type, \
             message_id, event_at, state, attempts, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $7)",
        )
        .bind(&id)
        .bind(subscription)
        .bind(tenant)
        .bind(&event_id)
        .bind(event_type)
        .bind(message_id)
        .bind(at)
        .execute(pool)
        .await
        .expect("insert delivery");
    });
    id
}

/// The (state, attempts) of a delivery, read directly.
async fn state_of(db: &TestDb, id: &str) -> (String, i64) {
    on_raw!(&db.raw, pool => {
        sqlx::query_as("SELECT state, attempts FROM webhook_deliveries WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .expect("delivery")
    })
}

fn attempt(at: DateTime<Utc>, status: Option<u16>, error: Option<&str>) -> DeliveryAttempt {
    DeliveryAttempt {
        at,
        duration_ms: 12,
        status_code: status,
        error: error.map(str::to_owned),
        response_excerpt: status.map(|s| format!("answer {s}")),
    }
}

fn ms(n: i64) -> chrono::Duration {
    chrono::Duration::milliseconds(n)
}

const LEASE: Duration = Duration::from_secs(60);

fn message(tenant: &str) -> Message {
    let mut message = Message::new(
        tenant,
        Direction::Outbound,
        Channel::Sms,
        "+14155550100",
        "hello",
        MessageStatus::Queued,
        Utc::now(),
    );
    message.from = Some("ACME".into());
    message
}

on_every_backend!(subscriptions_per_tenant, |db: TestDb| async move {
    let store = &db.store;
    let a = store
        .create_subscription(
            "acme",
            "https://hooks.example.com/a",
            &events(&["message.delivered", "message.failed"]),
            SECRET,
        )
        .await
        .expect("create");
    assert!(a.id.starts_with("wh_") && a.id.len() == 3 + 32, "{}", a.id);
    assert_eq!(a.events, events(&["message.delivered", "message.failed"]));
    assert_eq!(a.disabled_at, None);
    let b = store
        .create_subscription(
            "acme",
            "https://hooks.example.com/b",
            &events(&["*"]),
            SECRET,
        )
        .await
        .expect("create");
    store
        .create_subscription("globex", "https://globex.example/", &events(&["*"]), SECRET)
        .await
        .expect("create");

    let list = store.list_subscriptions("acme").await.expect("list");
    assert_eq!(list, vec![a.clone(), b.clone()], "oldest first, as created");
    assert_eq!(
        store.get_subscription("acme", &a.id).await.expect("get"),
        Some(a.clone())
    );
    assert_eq!(
        store.get_subscription("globex", &a.id).await.expect("get"),
        None
    );

    // The filter column is what the writer matches on.
    let (filter,): (String,) = on_raw!(&db.raw, pool => {
        sqlx::query_as("SELECT filter FROM webhook_subscriptions WHERE id = $1")
            .bind(&a.id)
            .fetch_one(pool)
            .await
            .expect("filter")
    });
    assert_eq!(filter, ",message.delivered,message.failed,");

    // Removing cancels pending deliveries and keeps finished ones.
    let now = Utc::now();
    let pending = insert_delivery(&db, &a.id, "acme", "m1", "message.delivered", now).await;
    let done = insert_delivery(&db, &a.id, "acme", "m2", "message.delivered", now).await;
    store
        .record_attempt(
            &done,
            &attempt(now, Some(200), None),
            AfterAttempt::Delivered,
        )
        .await
        .expect("record");
    assert!(
        !store
            .delete_subscription("globex", &a.id)
            .await
            .expect("delete")
    );
    assert!(
        store
            .delete_subscription("acme", &a.id)
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_subscription("acme", &a.id)
            .await
            .expect("delete again")
    );
    assert_eq!(
        store.get_subscription("acme", &a.id).await.expect("get"),
        None
    );
    assert_eq!(state_of(&db, &pending).await.0, "canceled");
    assert_eq!(state_of(&db, &done).await.0, "delivered");
    assert_eq!(
        store.list_subscriptions("acme").await.expect("list"),
        vec![b]
    );
});

on_every_backend!(
    writer_fans_out_to_matching_subscriptions,
    |db: TestDb| async move {
        // Moves all of `db` in, its temporary directory too.
        let db = db;
        let store = &db.store;
        let make = |filter: &'static [&'static str]| {
            let store = store.clone();
            async move {
                store
                    .create_subscription("acme", "http://127.0.0.1:9/", &events(filter), SECRET)
                    .await
                    .expect("create")
            }
        };
        let queued = make(&["message.queued"]).await;
        let all = make(&["*"]).await;
        let messages = make(&["message.*"]).await;
        let delivered = make(&["message.delivered", "message.read"]).await;
        let disabled = make(&["*"]).await;
        assert!(
            store
                .disable_subscription(&disabled.id, "test")
                .await
                .expect("disable")
        );
        store
            .create_subscription("globex", "http://127.0.0.1:9/", &events(&["*"]), SECRET)
            .await
            .expect("create");

        let m = message("acme");
        store
            .insert_message(NewMessage {
                message: m.clone(),
                enqueue: true,
                idempotency: None,
            })
            .await
            .expect("insert");
        let claimed = store
            .claim_deliveries(Utc::now(), LEASE, 100)
            .await
            .expect("claim");
        let mut subs: Vec<&str> = claimed.iter().map(|d| d.subscription_id.as_str()).collect();
        subs.sort_unstable();
        let mut expected = vec![queued.id.as_str(), all.id.as_str(), messages.id.as_str()];
        expected.sort_unstable();
        assert_eq!(
            subs, expected,
            "{delivered:?} and {disabled:?} are not taken"
        );
        let first = &claimed[0];
        assert_eq!(first.event_type, "message.queued");
        assert_eq!(first.message_id, m.id.as_str());
        assert_eq!(first.tenant, "acme");
        assert_eq!(first.secret, SECRET);
        assert_eq!(first.url, "http://127.0.0.1:9/");
        assert_eq!(first.attempts, 0);
        assert_eq!(first.first_attempt_at, None);
        assert_eq!(
            first.id,
            format!("{}:{}", first.event_id, first.subscription_id)
        );
        // One event, one id for every subscription.
        assert!(claimed.iter().all(|d| d.event_id == first.event_id));
    }
);

on_every_backend!(claims_keep_each_message_in_order, |db: TestDb| async move {
    let store = &db.store;
    let sub = store
        .create_subscription("acme", "http://127.0.0.1:9/", &events(&["*"]), SECRET)
        .await
        .expect("create");
    let other = store
        .create_subscription("acme", "http://127.0.0.1:9/other", &events(&["*"]), SECRET)
        .await
        .expect("create");
    let t0 = Utc::now() - ms(1000);
    let a1 = insert_delivery(&db, &sub.id, "acme", "mA", "message.queued", t0).await;
    let a2 = insert_delivery(&db, &sub.id, "acme", "mA", "message.sent", t0 + ms(1)).await;
    let a3 = insert_delivery(&db, &sub.id, "acme", "mA", "message.delivered", t0 + ms(2)).await;
    let b1 = insert_delivery(&db, &sub.id, "acme", "mB", "message.queued", t0 + ms(3)).await;
    let o1 = insert_delivery(&db, &other.id, "acme", "mA", "message.queued", t0).await;
    // Not due yet.
    let later = insert_delivery(
        &db,
        &sub.id,
        "acme",
        "mC",
        "message.queued",
        Utc::now() + ms(3_600_000),
    )
    .await;

    let now = Utc::now();
    let ids = |claimed: Vec<switchboard_store::DueDelivery>| {
        let mut ids: Vec<String> = claimed.into_iter().map(|d| d.id).collect();
        ids.sort();
        ids
    };
    let mut expected = vec![a1.clone(), b1.clone(), o1.clone()];
    expected.sort();
    assert_eq!(
        ids(store
            .claim_deliveries(now, LEASE, 100)
            .await
            .expect("claim")),
        expected
    );
    // All leased: nothing more, and not the later events of mA either.
    assert!(
        store
            .claim_deliveries(now, LEASE, 100)
            .await
            .expect("claim")
            .is_empty()
    );

    // a1 fails and is to be retried: a2 still waits behind it.
    store
        .record_attempt(
            &a1,
            &attempt(now, Some(500), Some("HTTP 500")),
            AfterAttempt::RetryAt(now + ms(500)),
        )
        .await
        .expect("record");
    // The later events of mA are due no sooner than a1's retry (so claims skip them).
    let pushed: Vec<(String, i64)> = on_raw!(&db.raw, pool => {
        sqlx::query_as(
            "SELECT id, next_attempt_at FROM webhook_deliveries \
             WHERE message_id = 'mA' AND subscription_id = $1 ORDER BY seq",
        )
        .bind(&sub.id)
        .fetch_all(pool)
        .await
        .expect("rows")
    });
    let retry_at = to_micros(now + ms(500));
    assert_eq!(
        pushed,
        vec![
            (a1.clone(), retry_at),
            (a2.clone(), retry_at),
            (a3.clone(), retry_at)
        ]
    );
    assert!(
        store
            .claim_deliveries(now, LEASE, 100)
            .await
            .expect("claim")
            .is_empty()
    );
    let retried = store
        .claim_deliveries(now + ms(600), LEASE, 100)
        .await
        .expect("claim");
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].id, a1);
    assert_eq!(retried[0].attempts, 1);
    assert_eq!(retried[0].attempts_in_schedule, 1);
    assert_eq!(
        retried[0].first_attempt_at,
        Some(from_micros(to_micros(now)))
    );

    // Delivered: now a2 is next, and after it gives up, a3.
    store
        .record_attempt(&a1, &attempt(now, Some(204), None), AfterAttempt::Delivered)
        .await
        .expect("record");
    let next = store
        .claim_deliveries(now + ms(600), LEASE, 100)
        .await
        .expect("claim");
    assert_eq!(ids(next), vec![a2.clone()]);
    store
        .record_attempt(
            &a2,
            &attempt(now, None, Some("refused")),
            AfterAttempt::GaveUp,
        )
        .await
        .expect("record");
    let next = store
        .claim_deliveries(now + ms(600), LEASE, 100)
        .await
        .expect("claim");
    assert_eq!(ids(next), vec![a3.clone()]);
    assert_eq!(state_of(&db, &a1).await, ("delivered".into(), 2));
    assert_eq!(state_of(&db, &a2).await, ("failed".into(), 1));

    // A lease that runs out (a worker died) lets the delivery be taken again.
    let expired = store
        .claim_deliveries(
            now + ms(600) + chrono::Duration::from_std(LEASE).expect("lease") + ms(1),
            LEASE,
            100,
        )
        .await
        .expect("claim");
    let expired = ids(expired);
    assert!(
        expired.contains(&a3) && expired.contains(&b1) && expired.contains(&o1),
        "{expired:?}"
    );
    assert!(!expired.contains(&later));
    // The limit holds.
    let db_later = store
        .claim_deliveries(Utc::now() + ms(7_200_000), LEASE, 1)
        .await
        .expect("claim");
    assert_eq!(db_later.len(), 1);
});

on_every_backend!(
    attempts_are_listed_newest_delivery_first,
    |db: TestDb| async move {
        let store = &db.store;
        let sub = store
            .create_subscription("acme", "http://127.0.0.1:9/", &events(&["*"]), SECRET)
            .await
            .expect("create");
        let t0 = Utc::now() - ms(10_000);
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(
                insert_delivery(
                    &db,
                    &sub.id,
                    "acme",
                    &format!("m{i}"),
                    "message.queued",
                    t0 + ms(i),
                )
                .await,
            );
        }
        let at1 = from_micros(to_micros(Utc::now()));
        let at2 = at1 + ms(5);
        store
            .record_attempt(
                &ids[4],
                &attempt(at1, Some(503), Some("HTTP 503")),
                AfterAttempt::RetryAt(at2),
            )
            .await
            .expect("record");
        store
            .record_attempt(
                &ids[4],
                &attempt(at2, Some(200), None),
                AfterAttempt::Delivered,
            )
            .await
            .expect("record");

        let page = store
            .list_deliveries("acme", &sub.id, 2, None)
            .await
            .expect("list");
        assert_eq!(page.len(), 2);
        assert_eq!(page[0].id, ids[4]);
        assert_eq!(page[1].id, ids[3]);
        let d = &page[0];
        assert_eq!(d.state, DeliveryState::Delivered);
        assert_eq!(d.attempts, 2);
        assert_eq!(d.last_status_code, Some(200));
        assert_eq!(d.last_error, None);
        assert_eq!(d.event_type, "message.queued");
        assert_eq!(d.message_id, "m4");
        assert_eq!(d.subscription_id, sub.id);
        assert_eq!(d.attempt_log.len(), 2);
        assert_eq!(d.attempt_log[0], attempt(at1, Some(503), Some("HTTP 503")));
        assert_eq!(d.attempt_log[1], attempt(at2, Some(200), None));
        assert!(page[1].attempt_log.is_empty());
        assert_eq!(page[1].state, DeliveryState::Pending);

        let rest = store
            .list_deliveries("acme", &sub.id, 10, Some(page[1].seq))
            .await
            .expect("list");
        let rest: Vec<&str> = rest.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(
            rest,
            vec![ids[2].as_str(), ids[1].as_str(), ids[0].as_str()]
        );
        assert!(
            store
                .list_deliveries("globex", &sub.id, 10, None)
                .await
                .expect("list")
                .is_empty()
        );
    }
);

on_every_backend!(failing_since_and_disabling, |db: TestDb| async move {
    let store = &db.store;
    let sub = store
        .create_subscription("acme", "http://127.0.0.1:9/", &events(&["*"]), SECRET)
        .await
        .expect("create");
    let t0 = Utc::now() - ms(10_000);
    let d1 = insert_delivery(&db, &sub.id, "acme", "m1", "message.queued", t0).await;
    let d2 = insert_delivery(&db, &sub.id, "acme", "m2", "message.queued", t0).await;
    let d3 = insert_delivery(&db, &sub.id, "acme", "m3", "message.queued", t0).await;
    let at1 = from_micros(to_micros(Utc::now()));
    let since = store
        .record_attempt(
            &d1,
            &attempt(at1, Some(500), Some("HTTP 500")),
            AfterAttempt::RetryAt(at1),
        )
        .await
        .expect("record");
    assert_eq!(since, Some(at1));
    let since = store
        .record_attempt(
            &d2,
            &attempt(at1 + ms(7), None, Some("refused")),
            AfterAttempt::RetryAt(at1),
        )
        .await
        .expect("record");
    assert_eq!(since, Some(at1), "failing since the first failure");
    let got = store
        .get_subscription("acme", &sub.id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(got.failing_since, Some(at1));
    let since = store
        .record_attempt(
            &d1,
            &attempt(at1 + ms(9), Some(200), None),
            AfterAttempt::Delivered,
        )
        .await
        .expect("record");
    assert_eq!(since, None, "a success clears it");
    let since = store
        .record_attempt(
            &d2,
            &attempt(at1 + ms(11), Some(500), None),
            AfterAttempt::RetryAt(at1),
        )
        .await
        .expect("record");
    assert_eq!(since, Some(at1 + ms(11)));

    assert!(
        store
            .disable_subscription(&sub.id, "410 Gone from receiver")
            .await
            .expect("disable")
    );
    assert!(
        !store
            .disable_subscription(&sub.id, "again")
            .await
            .expect("disable")
    );
    let got = store
        .get_subscription("acme", &sub.id)
        .await
        .expect("get")
        .expect("found");
    assert!(got.disabled_at.is_some());
    assert_eq!(
        got.disabled_reason.as_deref(),
        Some("410 Gone from receiver")
    );
    assert_eq!(state_of(&db, &d2).await.0, "failed");
    assert_eq!(state_of(&db, &d3).await.0, "failed");
    let page = store
        .list_deliveries("acme", &sub.id, 10, None)
        .await
        .expect("list");
    let d3_row = page.iter().find(|d| d.id == d3).expect("d3");
    assert_eq!(
        d3_row.last_error.as_deref(),
        Some("subscription disabled: 410 Gone from receiver")
    );
    // Nothing of a disabled subscription is taken, even new deliveries.
    insert_delivery(&db, &sub.id, "acme", "m4", "message.queued", t0).await;
    assert!(
        store
            .claim_deliveries(Utc::now(), LEASE, 100)
            .await
            .expect("claim")
            .is_empty()
    );
});

on_every_backend!(replays_keep_the_event_id, |db: TestDb| async move {
    let store = &db.store;
    let sub = store
        .create_subscription("acme", "http://127.0.0.1:9/", &events(&["*"]), SECRET)
        .await
        .expect("create");
    let t0 = Utc::now() - ms(10_000);
    let d = insert_delivery(&db, &sub.id, "acme", "m1", "message.queued", t0).await;
    let first = store
        .claim_deliveries(Utc::now(), LEASE, 10)
        .await
        .expect("claim");
    assert_eq!(first.len(), 1);
    // While an attempt is under way, a replay changes nothing (but the delivery exists).
    assert!(
        store
            .retry_delivery("acme", &sub.id, &d)
            .await
            .expect("retry")
    );
    let at = Utc::now();
    for _ in 0..3 {
        store
            .record_attempt(&d, &attempt(at, Some(500), None), AfterAttempt::RetryAt(at))
            .await
            .expect("record");
    }
    store
        .record_attempt(&d, &attempt(at, Some(500), None), AfterAttempt::GaveUp)
        .await
        .expect("record");
    assert_eq!(state_of(&db, &d).await, ("failed".into(), 4));

    assert!(
        !store
            .retry_delivery("globex", &sub.id, &d)
            .await
            .expect("retry")
    );
    assert!(
        !store
            .retry_delivery("acme", "wh_other", &d)
            .await
            .expect("retry")
    );
    assert!(
        !store
            .retry_delivery("acme", &sub.id, "evt_x:nope")
            .await
            .expect("retry")
    );
    assert!(
        store
            .retry_delivery("acme", &sub.id, &d)
            .await
            .expect("retry")
    );
    assert_eq!(state_of(&db, &d).await, ("pending".into(), 4));
    let again = store
        .claim_deliveries(Utc::now(), LEASE, 10)
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0].event_id, first[0].event_id,
        "a replay keeps the event id"
    );
    assert_eq!(again[0].attempts, 4);
    assert_eq!(
        again[0].attempts_in_schedule, 0,
        "the schedule starts afresh"
    );
    assert_eq!(again[0].first_attempt_at, None);
});

on_every_backend!(concurrent_claims_do_not_overlap, |db: TestDb| async move {
    let store = &db.store;
    let sub = store
        .create_subscription("acme", "http://127.0.0.1:9/", &events(&["*"]), SECRET)
        .await
        .expect("create");
    let t0 = Utc::now() - ms(10_000);
    for i in 0..40 {
        insert_delivery(&db, &sub.id, "acme", &format!("m{i}"), "message.queued", t0).await;
    }
    let now = Utc::now();
    let claims = (0..4).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.claim_deliveries(now, LEASE, 15).await.expect("claim") })
    });
    let mut all = Vec::new();
    for claim in claims {
        all.extend(claim.await.expect("join").into_iter().map(|d| d.id));
    }
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), total, "no delivery taken twice");
    assert_eq!(total, 40);
});

on_every_backend!(attempts_recorded_in_one_batch, |db: TestDb| async move {
    let store = &db.store;
    let up = store
        .create_subscription("acme", "http://127.0.0.1:9/up", &events(&["*"]), SECRET)
        .await
        .expect("create");
    let down = store
        .create_subscription("acme", "http://127.0.0.1:9/down", &events(&["*"]), SECRET)
        .await
        .expect("create");
    let t0 = Utc::now() - ms(1000);
    let d_up = insert_delivery(&db, &up.id, "acme", "m1", "message.queued", t0).await;
    let d_down = insert_delivery(&db, &down.id, "acme", "m1", "message.queued", t0).await;
    let at = from_micros(to_micros(Utc::now()));
    let answers = store
        .record_attempts(&[
            AttemptRecord {
                delivery_id: d_down.clone(),
                attempt: attempt(at, None, Some("connection refused")),
                next: AfterAttempt::RetryAt(at + ms(5)),
            },
            AttemptRecord {
                delivery_id: d_up.clone(),
                attempt: attempt(at, Some(200), None),
                next: AfterAttempt::Delivered,
            },
            AttemptRecord {
                delivery_id: "evt_gone:wh_gone".into(),
                attempt: attempt(at, Some(200), None),
                next: AfterAttempt::Delivered,
            },
        ])
        .await
        .expect("record");
    assert_eq!(answers, vec![Some(at), None, None]);
    assert_eq!(state_of(&db, &d_down).await, ("pending".into(), 1));
    assert_eq!(state_of(&db, &d_up).await, ("delivered".into(), 1));
    assert!(
        store
            .record_attempts(&[])
            .await
            .expect("nothing")
            .is_empty()
    );
});
