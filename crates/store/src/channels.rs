//! What the channels keep in the store beside messages: notices owed to channel
//! sessions (SMPP receipts), contacts' presence, attachment bytes, the parts of long
//! messages, and conversations bridged between channels.
//!
//! Notices are created by the group-commit writer in the transaction of the status
//! change or inbound message they announce; everything else here is written straight
//! through the pool (see the module comment of `webhooks`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use switchboard_model::{MessageStatus, text};

use crate::backend::on_pool;
use crate::rows::MessageRow;
use crate::time::{from_micros, to_micros};
use crate::webhooks::{micros, now};
use crate::writer::CancelOutcome;
use crate::{Store, StoreError};

/// A notice taken for delivery to its recipient.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredNotice {
    /// The notice id.
    pub id: String,
    /// `status` (a receipt) or `received` (an inbound message).
    pub kind: String,
    /// The message, with `status` set to the status the notice announces.
    pub message: switchboard_model::Message,
}

/// A contact's presence as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceRow {
    /// The tenant it is kept for.
    pub tenant: String,
    /// The contact's address (`xmpp:alice@localhost`).
    pub address: String,
    /// `available`, `away`, `dnd`, `xa` or `unavailable`.
    pub availability: String,
    /// The status note.
    pub status: Option<String>,
    /// When it changed.
    pub at: DateTime<Utc>,
}

/// An attachment's bytes with its description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentData {
    /// The file name, when the sender gave one.
    pub name: Option<String>,
    /// The MIME type.
    pub content_type: String,
    /// The bytes.
    pub data: Vec<u8>,
}

/// A conversation bridged between channels: a reply from `peer` to `ours` goes to
/// `reply_to`, from `reply_from`, threaded on `thread`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    /// Who we wrote to on the far channel (normalised address).
    pub peer: String,
    /// The address we wrote from there.
    pub ours: String,
    /// The tenant that owns the conversation.
    pub tenant: String,
    /// Where a reply goes: the original sender.
    pub reply_to: String,
    /// The address the reply is sent from: the original destination.
    pub reply_from: Option<String>,
    /// The id to thread the reply on (an email Message-ID).
    pub thread: Option<String>,
    /// The message that opened (or last continued) the conversation.
    pub message_id: String,
}

impl Store {
    /// Registers a notice recipient of `tenant` (idempotent; the tenant is updated).
    pub async fn register_notice_recipient(
        &self,
        key: &str,
        tenant: &str,
    ) -> Result<(), StoreError> {
        let at = to_micros(now());
        on_pool!(&self.inner.pool, pool => {
            sqlx::query(
                "INSERT INTO notice_recipients (key, tenant, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO UPDATE SET tenant = excluded.tenant",
            )
            .bind(key)
            .bind(tenant)
            .bind(at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Takes up to `limit` pending notices of `recipient`, oldest first, leased for
    /// `lease`. Pending notices older than `expiry` are marked done instead.
    pub async fn take_notices(
        &self,
        recipient: &str,
        limit: usize,
        lease: Duration,
        expiry: Duration,
    ) -> Result<Vec<StoredNotice>, StoreError> {
        let now = to_micros(now());
        let until = now.saturating_add(micros(lease));
        let oldest = now.saturating_sub(micros(expiry));
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        let begin = self.begin_write();
        let taken: Vec<(String, String, String, String)> = on_pool!(&self.inner.pool, pool => {
            // A look first, outside any transaction: most of the time nothing is pending.
            let any: Option<(i64,)> = sqlx::query_as(
                "SELECT seq FROM notices WHERE recipient = $1 AND done_at IS NULL \
                 AND (lease_until IS NULL OR lease_until <= $2) LIMIT 1",
            )
            .bind(recipient)
            .bind(now)
            .fetch_optional(pool)
            .await?;
            if any.is_none() {
                return Ok(Vec::new());
            }
            let mut tx = pool.begin_with(begin).await?;
            sqlx::query(
                "UPDATE notices SET done_at = $3 WHERE recipient = $1 AND done_at IS NULL \
                 AND created_at < $2",
            )
            .bind(recipient)
            .bind(oldest)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let rows: Vec<(String, String, String, String)> = sqlx::query_as(
                "SELECT id, message_id, kind, status FROM notices WHERE recipient = $1 \
                 AND done_at IS NULL AND (lease_until IS NULL OR lease_until <= $2) \
                 ORDER BY seq LIMIT $3",
            )
            .bind(recipient)
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            if !rows.is_empty() {
                let mut q = QueryBuilder::new("UPDATE notices SET lease_until = ");
                q.push_bind(until);
                q.push(" WHERE id IN (");
                let mut list = q.separated(", ");
                for (id, ..) in &rows {
                    list.push_bind(id.as_str());
                }
                q.push(")");
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
            rows
        });
        if taken.is_empty() {
            return Ok(Vec::new());
        }
        let messages: Vec<MessageRow> = on_pool!(&self.inner.pool, pool => {
            let mut q = QueryBuilder::new("SELECT * FROM messages WHERE id IN (");
            let mut list = q.separated(", ");
            for (_, message_id, ..) in &taken {
                list.push_bind(message_id.as_str());
            }
            q.push(")");
            q.build_query_as().fetch_all(pool).await?
        });
        let mut by_id = std::collections::HashMap::new();
        for row in messages {
            let message = row.into_message()?;
            by_id.insert(message.id.to_string(), message);
        }
        let mut notices = Vec::with_capacity(taken.len());
        let mut gone = Vec::new();
        for (id, message_id, kind, status) in taken {
            let Some(mut message) = by_id.get(&message_id).cloned() else {
                gone.push(id);
                continue;
            };
            if let Ok(status) = status.parse::<MessageStatus>() {
                message.status = status;
            }
            notices.push(StoredNotice { id, kind, message });
        }
        if !gone.is_empty() {
            self.notices_done(&gone).await?;
        }
        Ok(notices)
    }

    /// Marks notices done: they are not handed out again.
    pub async fn notices_done(&self, ids: &[String]) -> Result<(), StoreError> {
        let at = to_micros(now());
        for chunk in ids.chunks(500) {
            on_pool!(&self.inner.pool, pool => {
                let mut q = QueryBuilder::new("UPDATE notices SET done_at = ");
                q.push_bind(at);
                q.push(" WHERE id IN (");
                let mut list = q.separated(", ");
                for id in chunk {
                    list.push_bind(id.as_str());
                }
                q.push(")");
                q.build().execute(pool).await?;
            });
        }
        Ok(())
    }

    /// Keeps a contact's presence. When it changed (availability or note), also
    /// queues a `presence.changed` event for the tenant's webhook subscriptions, in the
    /// same transaction, and returns true.
    pub async fn update_presence(&self, row: PresenceRow) -> Result<bool, StoreError> {
        let at = to_micros(row.at);
        let begin = self.begin_write();
        let event_id = format!("evt_{}", uuid::Uuid::now_v7().simple());
        let data = serde_json::json!({
            "address": row.address,
            "status": row.availability,
            "note": row.status,
            "updated_at": row.at,
        })
        .to_string();
        let changed = on_pool!(&self.inner.pool, pool => {
            let mut tx = pool.begin_with(begin).await?;
            let before: Option<(String, Option<String>)> = sqlx::query_as(
                "SELECT availability, status FROM presence WHERE tenant = $1 AND address = $2",
            )
            .bind(&row.tenant)
            .bind(&row.address)
            .fetch_optional(&mut *tx)
            .await?;
            let changed = before.as_ref() != Some(&(row.availability.clone(), row.status.clone()));
            if changed {
                sqlx::query(
                    "INSERT INTO presence (tenant, address, availability, status, at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, address) DO UPDATE SET \
                     availability = excluded.availability, status = excluded.status, at = excluded.at",
                )
                .bind(&row.tenant)
                .bind(&row.address)
                .bind(&row.availability)
                .bind(&row.status)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                // Ordered per contact: the address stands where a message id would.
                sqlx::query(
                    "INSERT INTO webhook_deliveries (id, subscription_id, tenant, event_id, \
                     event_type, message_id, event_at, state, attempts, next_attempt_at, payload) \
                     SELECT $1 || ':' || s.id, s.id, s.tenant, $1, 'presence.changed', $3, $4, \
                     'pending', 0, $4, $5 FROM webhook_subscriptions s WHERE s.tenant = $2 \
                     AND s.disabled_at IS NULL AND (s.filter LIKE '%,*,%' \
                     OR s.filter LIKE '%,presence.changed,%' OR s.filter LIKE '%,presence.*,%')",
                )
                .bind(&event_id)
                .bind(&row.tenant)
                .bind(&row.address)
                .bind(at)
                .bind(&data)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            changed
        });
        if changed {
            self.changes().notify_waiters();
        }
        Ok(changed)
    }

    /// A contact's last presence, as kept for `tenant`.
    pub async fn get_presence(
        &self,
        tenant: &str,
        address: &str,
    ) -> Result<Option<PresenceRow>, StoreError> {
        let row: Option<(String, Option<String>, i64)> = on_pool!(&self.inner.pool, pool => {
            sqlx::query_as(
                "SELECT availability, status, at FROM presence WHERE tenant = $1 AND address = $2",
            )
            .bind(tenant)
            .bind(address)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(availability, status, at)| PresenceRow {
            tenant: tenant.to_owned(),
            address: address.to_owned(),
            availability,
            status,
            at: from_micros(at),
        }))
    }

    /// Stores the bytes of a message's attachments (before the message itself, which
    /// describes them; an attachment of a message never stored is never read).
    pub async fn put_attachments(
        &self,
        message_id: &str,
        attachments: &[AttachmentData],
    ) -> Result<(), StoreError> {
        if attachments.is_empty() {
            return Ok(());
        }
        on_pool!(&self.inner.pool, pool => {
            let mut q = QueryBuilder::new(
                "INSERT INTO attachments (message_id, idx, name, content_type, size, data) ",
            );
            q.push_values(attachments.iter().enumerate(), |mut b, (i, a)| {
                b.push_bind(message_id)
                    .push_bind(i64::try_from(i).unwrap_or_default())
                    .push_bind(a.name.as_deref())
                    .push_bind(a.content_type.as_str())
                    .push_bind(i64::try_from(a.data.len()).unwrap_or(i64::MAX))
                    .push_bind(a.data.as_slice());
            });
            q.build().execute(pool).await?;
        });
        Ok(())
    }

    /// Attachment `index` of the tenant's message `id`.
    pub async fn get_attachment(
        &self,
        tenant: &str,
        id: &str,
        index: u32,
    ) -> Result<Option<AttachmentData>, StoreError> {
        let row: Option<(Option<String>, String, Vec<u8>)> = on_pool!(&self.inner.pool, pool => {
            sqlx::query_as(
                "SELECT a.name, a.content_type, a.data FROM attachments a \
                 JOIN messages m ON m.id = a.message_id \
                 WHERE a.message_id = $1 AND m.tenant = $2 AND a.idx = $3",
            )
            .bind(id)
            .bind(tenant)
            .bind(i64::from(index))
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(name, content_type, data)| AttachmentData {
            name,
            content_type,
            data,
        }))
    }

    /// Every attachment of message `id`, in order (for sending it). Fewer than the
    /// message describes means bytes are missing.
    pub async fn attachments_of(&self, id: &str) -> Result<Vec<AttachmentData>, StoreError> {
        let rows: Vec<(Option<String>, String, Vec<u8>)> = on_pool!(&self.inner.pool, pool => {
            sqlx::query_as(
                "SELECT name, content_type, data FROM attachments \
                 WHERE message_id = $1 ORDER BY idx",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(name, content_type, data)| AttachmentData {
                name,
                content_type,
                data,
            })
            .collect())
    }

    /// Removes the attachment bytes stored for `message_id`: for bytes put ahead of a
    /// message that was then not stored (an idempotent repeat answered with the first
    /// message).
    pub async fn delete_attachments(&self, message_id: &str) -> Result<(), StoreError> {
        on_pool!(&self.inner.pool, pool => {
            sqlx::query("DELETE FROM attachments WHERE message_id = $1")
                .bind(message_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Replaces the text of the tenant's message `id` while it is still queued
    /// (SMPP `replace_sm`); its SMS encoding and segment count follow the new text.
    /// Answers like a cancel: `Canceled` means the text was replaced (the message stays
    /// queued).
    pub async fn replace_text(
        &self,
        tenant: &str,
        id: &str,
        new_text: &str,
    ) -> Result<CancelOutcome, StoreError> {
        let encoding = text::choose_encoding(new_text);
        let segments = i64::from(text::segment_count(new_text, encoding).segments);
        let at = to_micros(now());
        let updated = on_pool!(&self.inner.pool, pool => {
            sqlx::query(
                "UPDATE messages SET body = $3, \
                 segments = CASE WHEN channel = 'sms' THEN $4 ELSE segments END, \
                 encoding = CASE WHEN channel = 'sms' THEN $5 ELSE encoding END, \
                 updated_at = $6 WHERE id = $1 AND tenant = $2 AND status = 'queued'",
            )
            .bind(id)
            .bind(tenant)
            .bind(new_text)
            .bind(segments)
            .bind(encoding.as_str())
            .bind(at)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if updated > 0 {
            return Ok(CancelOutcome::Canceled);
        }
        Ok(match self.get_message(tenant, id).await? {
            None => CancelOutcome::NotFound,
            Some(message) => CancelOutcome::TooLate(message.status),
        })
    }

    /// Keeps (or renews) a bridged conversation.
    pub async fn record_bridge(&self, bridge: &Bridge) -> Result<(), StoreError> {
        let at = to_micros(now());
        on_pool!(&self.inner.pool, pool => {
            sqlx::query(
                "INSERT INTO bridges (peer, ours, tenant, reply_to, reply_from, thread, message_id, \
                 updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (peer, ours) DO \
                 UPDATE SET tenant = excluded.tenant, reply_to = excluded.reply_to, \
                 reply_from = excluded.reply_from, thread = excluded.thread, \
                 message_id = excluded.message_id, updated_at = excluded.updated_at",
            )
            .bind(&bridge.peer)
            .bind(&bridge.ours)
            .bind(&bridge.tenant)
            .bind(&bridge.reply_to)
            .bind(&bridge.reply_from)
            .bind(&bridge.thread)
            .bind(&bridge.message_id)
            .bind(at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The bridged conversation a message from `peer` to `ours` answers, if one was
    /// kept within `max_age`.
    pub async fn find_bridge(
        &self,
        peer: &str,
        ours: &str,
        max_age: Duration,
    ) -> Result<Option<Bridge>, StoreError> {
        let oldest = to_micros(now()).saturating_sub(micros(max_age));
        type Row = (String, String, Option<String>, Option<String>, String);
        let row: Option<Row> = on_pool!(&self.inner.pool, pool => {
            sqlx::query_as(
                "SELECT tenant, reply_to, reply_from, thread, message_id FROM bridges \
                 WHERE peer = $1 AND ours = $2 AND updated_at >= $3",
            )
            .bind(peer)
            .bind(ours)
            .bind(oldest)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(
            |(tenant, reply_to, reply_from, thread, message_id)| Bridge {
                peer: peer.to_owned(),
                ours: ours.to_owned(),
                tenant,
                reply_to,
                reply_from,
                thread,
                message_id,
            },
        ))
    }
}
