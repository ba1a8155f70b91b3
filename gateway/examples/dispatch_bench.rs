//! Dispatch overhead: messages from the outbox to a connector that accepts everything
//! at once, through the real store. Prints messages per second.
//!
//! `cargo run --release -p switchboard --example dispatch_bench -- [COUNT] [DATABASE_URL]`
//! (default 50000 messages on a temporary SQLite database).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use switchboard_adapter::{Adapter, BoxFuture, SendOutcome};
use switchboard_model::{Channel, Direction, Message, MessageStatus};
use switchboard_store::NewMessage;

struct Accept(AtomicU64);

impl Adapter for Accept {
    fn name(&self) -> &str {
        "noop"
    }
    fn channel(&self) -> Channel {
        Channel::Sms
    }
    fn concurrency(&self) -> usize {
        1024
    }
    fn send<'a>(&'a self, _message: &'a Message) -> BoxFuture<'a, SendOutcome> {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move { SendOutcome::sent(format!("up-{n}")) })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let count: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(50_000);
    let dir = tempfile::tempdir()?;
    let url = args
        .next()
        .unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.path().display()));
    let config = switchboard::config::parse(
        &format!(
            "[database]\nurl = \"{url}\"\n[log]\nlevel = \"warn\"\n[[tenants]]\nid = \"bench\"\napi_keys = [\"sk_bench_dispatch\"]\n"
        ),
        [],
    )?;
    let adapter = Arc::new(Accept(AtomicU64::new(0)));
    let state =
        switchboard::build_state_with(config, vec![adapter.clone() as Arc<dyn Adapter>]).await?;

    // Fill the outbox first (not measured).
    let fill = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in 0..64 {
        let store = state.store.clone();
        tasks.spawn(async move {
            for i in (chunk..count).step_by(64) {
                let message = Message::new(
                    "bench",
                    Direction::Outbound,
                    Channel::Sms,
                    format!("+1555{i:08}"),
                    "Benchmark message",
                    MessageStatus::Queued,
                    chrono::Utc::now(),
                );
                store
                    .insert_message(NewMessage {
                        message,
                        enqueue: true,
                        idempotency: None,
                    })
                    .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    println!(
        "outbox filled with {count} messages in {:.1} s",
        fill.elapsed().as_secs_f64()
    );

    let start = Instant::now();
    let commits = state.store.commit_count();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let dispatcher = switchboard::dispatch::spawn(state.clone(), stopping);
    let changes = state.store.changes();
    loop {
        let notified = changes.notified();
        if state.store.outbox_depth().await? == 0 {
            break;
        }
        let _ = tokio::time::timeout(std::time::Duration::from_millis(100), notified).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let _ = stop.send(true);
    dispatcher.await?;
    println!(
        "dispatched {} messages in {elapsed:.2} s: {:.0} messages/s ({} store commits), backend {}",
        adapter.0.load(Ordering::Relaxed),
        count as f64 / elapsed,
        state.store.commit_count() - commits,
        state.store.backend(),
    );
    Ok(())
}
