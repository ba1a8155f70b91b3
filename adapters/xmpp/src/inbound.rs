//! What the component does with a stanza that needs the core: a message is routed and
//! committed before its receipt (or error) is written; reports and presence are handed
//! to the core's handles.

use chrono::Utc;
use switchboard_adapter::{
    Availability, Core, Inbound, IngestOutcome, PresenceUpdate, StatusReport,
};
use switchboard_model::{Channel, MessageStatus};
use tokio_xmpp::minidom::Element;

use crate::config::XmppConfig;
use crate::stanza::{self, ChatMessage, Condition, Report, Show};

/// The connector's name.
pub const CONNECTOR: &str = "xmpp";

/// Hands a message to the core; returns the answer to write once it is committed (a
/// receipt when asked for, or an error stanza).
pub async fn message(config: &XmppConfig, core: &Core, chat: ChatMessage) -> Option<Element> {
    let ChatMessage {
        header,
        from,
        to,
        body,
        subject,
        metadata,
        wants_receipt,
    } = chat;
    let inbound = Inbound {
        channel: Channel::Xmpp,
        connector: CONNECTOR.into(),
        tenant: config.tenant.clone(),
        from: from.clone(),
        to: to.clone(),
        text: body,
        subject,
        metadata,
        keep_unmatched: false,
        attachments: Vec::new(),
    };
    let refuse = |condition, text: &str| {
        tracing::info!(%from, %to, condition = Condition::name(condition), text, "xmpp: message refused");
        Some(stanza::error_answer("message", &header, condition, text))
    };
    match core.ingest.receive(inbound).await {
        Ok(IngestOutcome::Received { id }) | Ok(IngestOutcome::Forwarded { id }) => {
            tracing::debug!(%from, %to, %id, "xmpp: message received");
            match (&header.id, wants_receipt) {
                (Some(stanza_id), true) => Some(stanza::receipt(&header, stanza_id)),
                _ => None,
            }
        }
        Ok(IngestOutcome::Unknown) => refuse(
            Condition::ItemNotFound,
            &format!("no one takes messages for {to}"),
        ),
        Ok(IngestOutcome::Refused { code, detail }) if code == "invalid_address" => {
            refuse(Condition::JidMalformed, &detail)
        }
        Ok(IngestOutcome::Refused { detail, .. }) => refuse(Condition::NotAcceptable, &detail),
        Err(e) => {
            tracing::error!(%from, %to, error = %e, "xmpp: the core could not take a message");
            Some(stanza::error_answer(
                "message",
                &header,
                Condition::InternalServerError,
                "the message could not be stored; try again later",
            ))
        }
    }
}

/// Hands delivery reports to the core.
pub async fn reports(core: &Core, reports: Vec<Report>) {
    for report in reports {
        let (upstream_id, status, error) = match report {
            Report::Received(id) => (id, MessageStatus::Delivered, None),
            Report::Displayed(id) => (id, MessageStatus::Read, None),
            Report::Error {
                id,
                condition,
                text,
            } => (id, MessageStatus::Undelivered, Some((condition, text))),
        };
        let report = StatusReport {
            connector: CONNECTOR.into(),
            upstream_id,
            status,
            error,
            at: Utc::now(),
        };
        if let Err(e) = core.reports.report(report.clone()).await {
            tracing::warn!(upstream_id = %report.upstream_id, error = %e, "xmpp: report not kept");
        }
    }
}

/// Hands a contact's presence to the core.
pub async fn presence(
    config: &XmppConfig,
    core: &Core,
    contact: String,
    show: Show,
    status: Option<String>,
) {
    let availability = match show {
        Show::Available => Availability::Available,
        Show::Away => Availability::Away,
        Show::Dnd => Availability::Dnd,
        Show::Xa => Availability::Xa,
        Show::Unavailable => Availability::Unavailable,
    };
    let update = PresenceUpdate {
        tenant: config.tenant.clone(),
        address: contact,
        availability,
        status,
        at: Utc::now(),
    };
    if let Err(e) = core.presence.update(update.clone()).await {
        tracing::warn!(address = %update.address, error = %e, "xmpp: presence not kept");
    }
}
