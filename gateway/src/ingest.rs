//! Inbound messages from the channel adapters: routed (DESIGN.md section 8, inbound)
//! and stored before the adapter acknowledges them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use switchboard_adapter::{BoxFuture, Inbound, Ingest, IngestOutcome};
use switchboard_model::{Address, Attachment, Channel, Direction, Message, MessageStatus};
use switchboard_router::{Decision, RouteRequest};
use switchboard_store::{AttachmentData, Bridge, InsertOutcome, NewMessage};

use crate::state::AppState;

/// The ingest handle of the gateway.
pub struct GatewayIngest(pub AppState);

impl Ingest for GatewayIngest {
    fn receive(&self, inbound: Inbound) -> BoxFuture<'_, Result<IngestOutcome, String>> {
        Box::pin(async move { receive(&self.0, inbound).await })
    }

    fn accepts(&self, channel: Channel, tenant: &str, to: &str) -> bool {
        self.owner(channel, tenant, to).is_some()
    }

    fn owner(&self, channel: Channel, tenant: &str, to: &str) -> Option<String> {
        let to = Address::parse(to).ok()?;
        let request = RouteRequest {
            direction: Direction::Inbound,
            tenant,
            from: None,
            to: &to,
            arrived_on: Some(channel),
        };
        match self.0.routes.decide(&request, self.0.tenants.as_ref()) {
            Decision::Receive { tenant, .. } | Decision::Send { tenant, .. } => Some(tenant),
            _ => None,
        }
    }
}

fn refused(code: &str, detail: impl Into<String>) -> IngestOutcome {
    IngestOutcome::Refused {
        code: code.to_owned(),
        detail: detail.into(),
    }
}

/// How long a bridged conversation is remembered for replies.
const BRIDGE_MEMORY: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// Routes and stores one inbound message.
///
/// A reply to a conversation bridged earlier goes back to where the conversation came
/// from (a mail answered by SMS returns to the mail's sender, threaded on its
/// Message-ID). Otherwise the route table decides (DESIGN.md section 8, inbound). A
/// message bridged to another channel is remembered, so the answer finds its way back.
pub async fn receive(state: &AppState, inbound: Inbound) -> Result<IngestOutcome, String> {
    let Ok(to) = Address::parse(&inbound.to) else {
        return Ok(refused(
            "invalid_address",
            format!("{:?} is not an address", inbound.to),
        ));
    };
    let from = Address::parse_for(inbound.channel, &inbound.from)
        .or_else(|_| Address::parse(&inbound.from))
        .ok();
    let now = Utc::now();
    let now = DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
    let mut metadata: BTreeMap<String, String> = inbound.metadata.into_iter().collect();
    metadata.insert("source".into(), inbound.channel.as_str().into());
    metadata.insert("source_connector".into(), inbound.connector.clone());
    if to.as_str() != inbound.to {
        metadata.insert("original_to".into(), inbound.to.clone());
    }

    let arrived_to = to.as_str().to_owned();
    let reply = match &from {
        Some(from) => state
            .store
            .find_bridge(from.as_str(), to.as_str(), BRIDGE_MEMORY)
            .await
            .map_err(|e| e.to_string())?,
        None => None,
    };
    let (tenant, to, direction, connector, sender) = if let Some(bridge) = &reply {
        let Ok(reply_to) = Address::parse(&bridge.reply_to) else {
            return Ok(refused(
                "invalid_address",
                format!(
                    "the conversation's sender {:?} is not an address",
                    bridge.reply_to
                ),
            ));
        };
        metadata.insert("in_reply_to_message".into(), bridge.message_id.clone());
        if let Some(thread) = &bridge.thread {
            metadata.insert("email.in_reply_to".into(), thread.clone());
        }
        let sender = bridge.reply_from.clone();
        (
            bridge.tenant.clone(),
            reply_to,
            Direction::Outbound,
            None,
            sender,
        )
    } else {
        let request = RouteRequest {
            direction: Direction::Inbound,
            tenant: &inbound.tenant,
            from: from.as_ref(),
            to: &to,
            arrived_on: Some(inbound.channel),
        };
        match state.routes.decide(&request, state.tenants.as_ref()) {
            Decision::Receive { tenant, to, .. } => (
                tenant,
                to,
                Direction::Inbound,
                None,
                from.clone().map(Address::into_string),
            ),
            Decision::Send {
                connector,
                to,
                tenant,
                ..
            } => {
                let sender = bridge_sender(state, &tenant, from.as_ref(), &to);
                (tenant, to, Direction::Outbound, Some(connector), sender)
            }
            Decision::Unknown { to } if inbound.keep_unmatched => (
                inbound.tenant.clone(),
                to,
                Direction::Inbound,
                None,
                from.clone().map(Address::into_string),
            ),
            Decision::Unknown { .. } => return Ok(IngestOutcome::Unknown),
            Decision::Fail { code, detail } => return Ok(refused(code.as_str(), detail)),
        }
    };
    if let Some(from) = &from
        && sender.as_deref() != Some(from.as_str())
    {
        metadata.insert("original_from".into(), from.as_str().to_owned());
    }
    let status = match direction {
        Direction::Inbound => MessageStatus::Received,
        Direction::Outbound => MessageStatus::Queued,
    };
    let detail = match &reply {
        Some(bridge) => format!(
            "arrived on {} through {}: a reply to message {}",
            inbound.channel, inbound.connector, bridge.message_id
        ),
        None => format!(
            "arrived on {} through {}",
            inbound.channel, inbound.connector
        ),
    };
    let bridged_to = (direction == Direction::Outbound).then(|| to.clone());
    let mut message = Message::new(
        tenant,
        direction,
        to.channel(),
        to.into_string(),
        inbound.text,
        status,
        now,
    );
    message.from = sender;
    message.subject = inbound.subject;
    message.metadata = metadata;
    message.connector = connector;
    message.attachments = inbound
        .attachments
        .iter()
        .map(|a| Attachment::of(a.name.as_deref(), &a.content_type, &a.data))
        .collect();
    if let Some(first) = message.events.iter_mut().flatten().next() {
        first.detail = Some(detail);
    }
    let id = message.id.to_string();
    if !inbound.attachments.is_empty() {
        let data: Vec<AttachmentData> = inbound
            .attachments
            .into_iter()
            .map(|a| AttachmentData {
                name: a.name,
                content_type: a.content_type,
                data: a.data,
            })
            .collect();
        state
            .store
            .put_attachments(&id, &data)
            .await
            .map_err(|e| e.to_string())?;
    }
    // Remember a bridge before the message can leave, so no answer can outrun it.
    if let (Some(to), Some(from)) = (&bridged_to, &from)
        && reply.is_none()
        && to.channel() != inbound.channel
    {
        state
            .store
            .record_bridge(&Bridge {
                peer: to.as_str().to_owned(),
                ours: message
                    .from
                    .clone()
                    .unwrap_or_else(|| from.as_str().to_owned()),
                tenant: message.tenant.clone(),
                reply_to: from.as_str().to_owned(),
                reply_from: Some(arrived_to.clone()),
                thread: message.metadata.get("email.message_id").cloned(),
                message_id: id.clone(),
            })
            .await
            .map_err(|e| e.to_string())?;
    }
    let outcome = state
        .store
        .insert_message(NewMessage {
            message,
            enqueue: direction == Direction::Outbound,
            idempotency: None,
        })
        .await
        .map_err(|e| e.to_string())?;
    if outcome != InsertOutcome::Created {
        return Err("the store did not create the message".into());
    }
    Ok(match direction {
        Direction::Inbound => IngestOutcome::Received { id },
        Direction::Outbound => IngestOutcome::Forwarded { id },
    })
}

/// The sender of a message bridged to `to`'s channel. SMS cannot carry a sender from
/// another channel: there it is the tenant's own SMS address (if it has one). Other
/// channels map any sender into their own address space (an SMS number becomes
/// `+1555…@<component>` on XMPP), so the original sender stays.
fn bridge_sender(
    state: &AppState,
    tenant: &str,
    from: Option<&Address>,
    to: &Address,
) -> Option<String> {
    let from = from?;
    if to.channel() == Channel::Sms && from.channel() != Channel::Sms {
        return state
            .tenants
            .by_id(tenant)
            .and_then(|t| t.default_from(Channel::Sms))
            .map(|a| a.as_str().to_owned());
    }
    Some(from.as_str().to_owned())
}
