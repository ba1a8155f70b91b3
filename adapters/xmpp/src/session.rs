//! One life of the component stream: reads stanzas and answers them, writes what the
//! connector sends, keeps the stream alive, until the server closes it, it breaks, or
//! the gateway stops.
//!
//! Stanzas that need the core (messages, reports, presence) are handled by tasks, at
//! most `[xmpp] inbound_window` at once; beyond that the stream is not read, so the
//! server holds back. Their answers (receipts, errors) are written once the core has
//! committed, through the same queue as outbound messages.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use switchboard_adapter::{Core, Shutdown};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::xmlstream::ReadError;

use crate::connection::ComponentStream;
use crate::stanza::{self, Incoming};
use crate::{Outgoing, Shared, inbound};

/// Why a session ended.
pub enum End {
    /// The gateway is stopping.
    Shutdown,
    /// The stream closed or broke; connect again.
    Broken(String),
}

/// How many queued outbound stanzas are written before one flush.
const WRITE_BATCH: usize = 256;

/// A contact's presence waiting to be applied, with the window permit it holds.
type Presence = (
    String,
    stanza::Show,
    Option<String>,
    Option<OwnedSemaphorePermit>,
);

/// How many presence changes may wait to be applied.
const QUEUE_PRESENCE: usize = 1024;

/// How long a stopping session waits for stanzas still being stored.
const DRAIN: Duration = Duration::from_secs(5);

/// Runs the session on `stream` until it ends.
pub async fn run(
    shared: &Arc<Shared>,
    core: &Core,
    mut stream: ComponentStream,
    outgoing: &mut mpsc::Receiver<Outgoing>,
    shutdown: &mut Shutdown,
) -> End {
    let window = Arc::new(Semaphore::new(shared.config.inbound_window));
    let mut permit: Option<OwnedSemaphorePermit> = None;
    let mut tasks = JoinSet::new();
    let mut pings = 0u64;
    // Presence is applied in the order it arrived (a later change must win), by one task.
    let (presence_tx, mut presence_rx) = mpsc::channel::<Presence>(QUEUE_PRESENCE);
    {
        let (shared, core) = (shared.clone(), core.clone());
        tasks.spawn(async move {
            while let Some((contact, show, status, held)) = presence_rx.recv().await {
                inbound::presence(&shared.config, &core, contact, show, status).await;
                drop(held);
            }
        });
    }
    let end = loop {
        while let Some(done) = tasks.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "xmpp: a stanza task failed");
            }
        }
        tokio::select! {
            _ = shutdown.stopped() => break End::Shutdown,
            acquired = window.clone().acquire_owned(), if permit.is_none() => {
                permit = acquired.ok();
            }
            read = stream.next(), if permit.is_some() => {
                let element = match read {
                    Some(Ok(element)) => element,
                    Some(Err(ReadError::SoftTimeout)) => {
                        pings += 1;
                        let ping = stanza::ping(&shared.config.component, &format!("keepalive-{pings}"));
                        if let Err(e) = write(&mut stream, &[ping]).await {
                            break End::Broken(e);
                        }
                        continue;
                    }
                    Some(Err(ReadError::ParseError(e))) => {
                        tracing::warn!(error = %e, "xmpp: unreadable element skipped");
                        continue;
                    }
                    Some(Err(ReadError::HardError(e))) => break End::Broken(e.to_string()),
                    Some(Err(ReadError::StreamFooterReceived)) | None => {
                        break End::Broken("the server closed the stream".into());
                    }
                };
                let name = element.name().to_owned();
                let incoming = stanza::classify(
                    &element,
                    &shared.config.component,
                    shared.config.max_body_chars,
                );
                let answer = match incoming {
                    Incoming::Chat(chat, reports) => {
                        let (shared, core, held) = (shared.clone(), core.clone(), permit.take());
                        tasks.spawn(async move {
                            inbound::reports(&core, reports).await;
                            if let Some(answer) = inbound::message(&shared.config, &core, chat).await {
                                shared.answer(answer).await;
                            }
                            drop(held);
                        });
                        Vec::new()
                    }
                    Incoming::Reports(reports) => {
                        let (core, held) = (core.clone(), permit.take());
                        tasks.spawn(async move {
                            inbound::reports(&core, reports).await;
                            drop(held);
                        });
                        Vec::new()
                    }
                    Incoming::Presence { contact, show, status, .. } => {
                        if presence_tx.send((contact, show, status, permit.take())).await.is_err() {
                            tracing::error!("xmpp: the presence task is gone");
                        }
                        Vec::new()
                    }
                    Incoming::Subscribe(header) => {
                        let ours = bare(&header.to);
                        let theirs = bare(&header.from);
                        vec![
                            stanza::presence(&ours, &theirs, Some("subscribed")),
                            stanza::presence(&ours, &theirs, Some("subscribe")),
                            stanza::presence(&ours, &header.from, None),
                        ]
                    }
                    Incoming::Unsubscribe(header) => {
                        vec![stanza::presence(&bare(&header.to), &bare(&header.from), Some("unsubscribed"))]
                    }
                    Incoming::Probe(header) => {
                        vec![stanza::presence(&bare(&header.to), &header.from, None)]
                    }
                    Incoming::Ping(header) => vec![stanza::iq_result(&header, None)],
                    Incoming::DiscoInfo(header) => {
                        vec![stanza::iq_result(&header, Some(stanza::disco_info()))]
                    }
                    Incoming::Refuse(header, condition, text) => {
                        tracing::info!(
                            from = %header.from, to = %header.to, condition = condition.name(), %text,
                            "xmpp: stanza refused"
                        );
                        vec![stanza::error_answer(&name, &header, condition, &text)]
                    }
                    Incoming::Ignore(why) => {
                        tracing::debug!(stanza = %name, why, "xmpp: stanza ignored");
                        Vec::new()
                    }
                };
                if !answer.is_empty()
                    && let Err(e) = write(&mut stream, &answer).await
                {
                    break End::Broken(e);
                }
            }
            Some(first) = outgoing.recv() => {
                if let Err(e) = write_batch(&mut stream, first, outgoing).await {
                    break End::Broken(e);
                }
            }
        }
    };
    drop(presence_tx);
    // Stanzas already taken are stored (or refused) before the session goes; their
    // answers are written while the stream still works.
    let _ = tokio::time::timeout(DRAIN, async {
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "xmpp: a stanza task failed");
            }
        }
    })
    .await;
    tasks.abort_all();
    let mut pending = Vec::new();
    while let Ok(item) = outgoing.try_recv() {
        pending.push(item);
    }
    if matches!(end, End::Shutdown) {
        let elements: Vec<Element> = pending.iter().map(|o| o.element.clone()).collect();
        let written = write(&mut stream, &elements).await.is_ok();
        for item in pending {
            item.done(written);
        }
        let _ = tokio::time::timeout(DRAIN, stream.shutdown()).await;
    } else {
        for item in pending {
            item.done(false);
        }
    }
    end
}

/// Writes `first` and whatever else is queued (up to a batch), flushes once, and tells
/// each sender whether its stanza was written.
async fn write_batch(
    stream: &mut ComponentStream,
    first: Outgoing,
    outgoing: &mut mpsc::Receiver<Outgoing>,
) -> Result<(), String> {
    let mut batch = vec![first];
    while batch.len() < WRITE_BATCH {
        match outgoing.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    let mut result = Ok(());
    for item in &batch {
        if let Err(e) = stream.feed(&item.element).await {
            result = Err(format!("write: {e}"));
            break;
        }
    }
    if result.is_ok() {
        result = SinkExt::<&Element>::flush(stream)
            .await
            .map_err(|e| format!("write: {e}"));
    }
    let written = result.is_ok();
    for item in batch {
        item.done(written);
    }
    result
}

/// Writes `elements` and flushes.
async fn write(stream: &mut ComponentStream, elements: &[Element]) -> Result<(), String> {
    for element in elements {
        stream
            .feed(element)
            .await
            .map_err(|e| format!("write: {e}"))?;
    }
    SinkExt::<&Element>::flush(stream)
        .await
        .map_err(|e| format!("write: {e}"))
}

/// The bare form of a JID as written, or the text itself when it is no JID.
fn bare(jid: &str) -> String {
    Jid::new(jid)
        .map(|j| j.to_bare().to_string())
        .unwrap_or_else(|_| jid.to_owned())
}
