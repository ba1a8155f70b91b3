//! Inbound messages from the channel adapters: routed (DESIGN.md section 8, inbound)
//! and stored before the adapter acknowledges them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use switchboard_adapter::{BoxFuture, Inbound, Ingest, IngestOutcome};
use switchboard_model::{Address, Channel, Direction, Message, MessageStatus};
use switchboard_router::{Decision, RouteRequest};
use switchboard_store::{InsertOutcome, NewMessage};

use crate::state::AppState;

/// The ingest handle of the gateway.
pub struct GatewayIngest(pub AppState);

impl Ingest for GatewayIngest {
    fn receive(&self, inbound: Inbound) -> BoxFuture<'_, Result<IngestOutcome, String>> {
        Box::pin(async move { receive(&self.0, inbound).await })
    }

    fn accepts(&self, channel: Channel, tenant: &str, to: &str) -> bool {
        let Ok(to) = Address::parse(to) else {
            return false;
        };
        let request = RouteRequest {
            direction: Direction::Inbound,
            tenant,
            from: None,
            to: &to,
            arrived_on: Some(channel),
        };
        matches!(
            self.0.routes.decide(&request, self.0.tenants.as_ref()),
            Decision::Receive { .. } | Decision::Send { .. }
        )
    }
}

fn refused(code: &str, detail: impl Into<String>) -> IngestOutcome {
    IngestOutcome::Refused {
        code: code.to_owned(),
        detail: detail.into(),
    }
}

/// Routes and stores one inbound message.
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
    let request = RouteRequest {
        direction: Direction::Inbound,
        tenant: &inbound.tenant,
        from: from.as_ref(),
        to: &to,
        arrived_on: Some(inbound.channel),
    };
    let now = Utc::now();
    let now = DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
    let (tenant, to, direction, connector) =
        match state.routes.decide(&request, state.tenants.as_ref()) {
            Decision::Receive { tenant, to, .. } => (tenant, to, Direction::Inbound, None),
            Decision::Send {
                connector,
                to,
                tenant,
                ..
            } => (tenant, to, Direction::Outbound, Some(connector)),
            Decision::Unknown { to } if inbound.keep_unmatched => {
                (inbound.tenant.clone(), to, Direction::Inbound, None)
            }
            Decision::Unknown { .. } => return Ok(IngestOutcome::Unknown),
            Decision::Fail { code, detail } => return Ok(refused(code.as_str(), detail)),
        };
    let mut metadata: BTreeMap<String, String> = inbound.metadata.into_iter().collect();
    metadata.insert("source".into(), inbound.channel.as_str().into());
    metadata.insert("source_connector".into(), inbound.connector.clone());
    if to.as_str() != inbound.to {
        metadata.insert("original_to".into(), inbound.to.clone());
    }
    let status = match direction {
        Direction::Inbound => MessageStatus::Received,
        Direction::Outbound => MessageStatus::Queued,
    };
    let detail = format!(
        "arrived on {} through {}",
        inbound.channel, inbound.connector
    );
    let mut message = Message::new(
        tenant,
        direction,
        to.channel(),
        to.into_string(),
        inbound.text,
        status,
        now,
    );
    message.from = from.map(Address::into_string);
    message.subject = inbound.subject;
    message.metadata = metadata;
    message.connector = connector;
    if let Some(first) = message.events.iter_mut().flatten().next() {
        first.detail = Some(detail);
    }
    let id = message.id.to_string();
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
