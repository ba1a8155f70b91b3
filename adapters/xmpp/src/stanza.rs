//! The stanzas the component reads and writes, apart from any I/O: what an inbound
//! stanza means ([`classify`]) and the stanzas written in answer or sent out.
//!
//! Inbound stanzas are read as plain [`Element`]s and read leniently here, so a stanza
//! that is not what it should be gets a stanza error in answer and never ends the stream.

use tokio_xmpp::minidom::rxml::NcName;
use tokio_xmpp::minidom::{Element, ElementBuilder};

use crate::address::{NotAnAddress, address_of_node};

/// The stream namespace of XEP-0114.
pub const NS_COMPONENT: &str = "jabber:component:accept";
/// XEP-0184 message receipts.
pub const NS_RECEIPTS: &str = "urn:xmpp:receipts";
/// XEP-0333 chat markers.
pub const NS_MARKERS: &str = "urn:xmpp:chat-markers:0";
/// XEP-0359 unique and stable stanza ids.
pub const NS_SID: &str = "urn:xmpp:sid:0";
/// RFC 6120 stanza error conditions.
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// XEP-0199 ping.
pub const NS_PING: &str = "urn:xmpp:ping";
/// XEP-0030 service discovery (info).
pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

/// A stanza error condition (RFC 6120 section 8.3.3) with its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// `bad-request` (modify).
    BadRequest,
    /// `jid-malformed` (modify).
    JidMalformed,
    /// `item-not-found` (cancel).
    ItemNotFound,
    /// `not-acceptable` (modify).
    NotAcceptable,
    /// `policy-violation` (modify).
    PolicyViolation,
    /// `service-unavailable` (cancel).
    ServiceUnavailable,
    /// `internal-server-error` (wait).
    InternalServerError,
}

impl Condition {
    /// The element name.
    pub fn name(self) -> &'static str {
        match self {
            Condition::BadRequest => "bad-request",
            Condition::JidMalformed => "jid-malformed",
            Condition::ItemNotFound => "item-not-found",
            Condition::NotAcceptable => "not-acceptable",
            Condition::PolicyViolation => "policy-violation",
            Condition::ServiceUnavailable => "service-unavailable",
            Condition::InternalServerError => "internal-server-error",
        }
    }

    /// The error `type`: what the sender should do.
    pub fn error_type(self) -> &'static str {
        match self {
            Condition::ItemNotFound | Condition::ServiceUnavailable => "cancel",
            Condition::InternalServerError => "wait",
            _ => "modify",
        }
    }
}

/// Who a stanza is from and to, and its id, as written (for answers).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    /// `from`.
    pub from: String,
    /// `to`.
    pub to: String,
    /// `id`, if any.
    pub id: Option<String>,
}

/// A chat message for the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Who and where (the original attributes).
    pub header: Header,
    /// The sender as a gateway address: `xmpp:` + the bare JID.
    pub from: String,
    /// The destination as a gateway address (see [`crate::address`]).
    pub to: String,
    /// The body.
    pub body: String,
    /// `<subject/>`.
    pub subject: Option<String>,
    /// `xmpp.id`, `xmpp.thread`, `xmpp.origin_id`.
    pub metadata: Vec<(String, String)>,
    /// The sender asked for a XEP-0184 receipt.
    pub wants_receipt: bool,
}

/// What the far side says about a message the component sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// XEP-0184 `<received id=…/>`.
    Received(String),
    /// XEP-0333 `<displayed id=…/>`.
    Displayed(String),
    /// A `type='error'` message with our id: the condition and its text.
    Error {
        /// The id of our message.
        id: String,
        /// The condition's element name.
        condition: String,
        /// `<text/>`, or the condition again.
        text: String,
    },
}

/// Availability as presence gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// No `<show/>` (or `chat`).
    Available,
    /// `away`.
    Away,
    /// `dnd`.
    Dnd,
    /// `xa`.
    Xa,
    /// `type='unavailable'`.
    Unavailable,
}

/// What an inbound stanza asks of the component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A message to store and route (it may also carry reports).
    Chat(ChatMessage, Vec<Report>),
    /// Reports only.
    Reports(Vec<Report>),
    /// A contact's presence changed.
    Presence {
        /// The original attributes.
        header: Header,
        /// `xmpp:` + the contact's bare JID.
        contact: String,
        /// Their availability.
        show: Show,
        /// `<status/>`.
        status: Option<String>,
    },
    /// `subscribe`: answer `subscribed`, and subscribe back.
    Subscribe(Header),
    /// `unsubscribe`: answer `unsubscribed`.
    Unsubscribe(Header),
    /// `probe`: answer with the component JID's presence.
    Probe(Header),
    /// An XEP-0199 ping to answer.
    Ping(Header),
    /// XEP-0030 disco#info to answer.
    DiscoInfo(Header),
    /// Answer with this error.
    Refuse(Header, Condition, String),
    /// Nothing to do (chat states, results of our pings, errors about stanzas that
    /// were not messages, headlines).
    Ignore(&'static str),
}

/// What `element`, read from the component stream of `component`, asks for. Never
/// panics, whatever it holds.
pub fn classify(element: &Element, component: &str, max_body_chars: usize) -> Incoming {
    let header = Header {
        from: element.attr("from").unwrap_or_default().to_owned(),
        to: element.attr("to").unwrap_or_default().to_owned(),
        id: element.attr("id").map(str::to_owned),
    };
    if element.ns() != NS_COMPONENT {
        return Incoming::Ignore("not in the component namespace");
    }
    match element.name() {
        "message" => classify_message(element, header, component, max_body_chars),
        "presence" => classify_presence(element, header),
        "iq" => classify_iq(element, header),
        _ => Incoming::Ignore("not a stanza"),
    }
}

/// Parses `xml` as one stanza and classifies it (the fuzzing entry point); `None` when
/// it is not well-formed XML.
pub fn classify_xml(xml: &[u8], component: &str) -> Option<Incoming> {
    let element = Element::from_reader_with_prefixes(xml, NS_COMPONENT.to_owned()).ok()?;
    Some(classify(&element, component, 10_000))
}

fn classify_message(
    element: &Element,
    header: Header,
    component: &str,
    max_body_chars: usize,
) -> Incoming {
    let kind = element.attr("type").unwrap_or("normal");
    if kind == "error" {
        return match header.id {
            Some(id) => {
                let (condition, text) = error_of(element);
                Incoming::Reports(vec![Report::Error {
                    id,
                    condition,
                    text,
                }])
            }
            None => Incoming::Ignore("an error about a message without an id"),
        };
    }
    let mut reports = Vec::new();
    for child in element.children() {
        let id = child.attr("id").map(str::to_owned);
        match (child.name(), child.ns().as_str(), id) {
            ("received", NS_RECEIPTS, Some(id)) => reports.push(Report::Received(id)),
            ("displayed", NS_MARKERS, Some(id)) => reports.push(Report::Displayed(id)),
            _ => {}
        }
    }
    let body = element.get_child("body", NS_COMPONENT).map(Element::text);
    let Some(body) = body.filter(|b| !b.trim().is_empty()) else {
        return if reports.is_empty() {
            Incoming::Ignore("a message without a body")
        } else {
            Incoming::Reports(reports)
        };
    };
    if kind == "headline" || kind == "groupchat" {
        // Never answered with an error (RFC 6121 section 5.2.2).
        return Incoming::Ignore("a headline or groupchat message");
    }
    if kind != "chat" && kind != "normal" {
        return Incoming::Refuse(
            header,
            Condition::BadRequest,
            format!("message type {kind:?} is not chat or normal"),
        );
    }
    let from = match jid_bare(&header.from) {
        Some(bare) => format!("xmpp:{bare}"),
        None => {
            let why = format!("from {:?} is not a JID", header.from);
            return Incoming::Refuse(header, Condition::JidMalformed, why);
        }
    };
    let to = match to_address(&header.to, component) {
        Ok(to) => to,
        Err(NotAnAddress(why)) => return Incoming::Refuse(header, Condition::JidMalformed, why),
    };
    if body.chars().count() > max_body_chars {
        return Incoming::Refuse(
            header,
            Condition::PolicyViolation,
            format!("the body is longer than {max_body_chars} characters"),
        );
    }
    let mut metadata = Vec::new();
    if let Some(id) = &header.id {
        metadata.push(("xmpp.id".to_owned(), id.clone()));
    }
    if let Some(thread) = element.get_child("thread", NS_COMPONENT) {
        metadata.push(("xmpp.thread".to_owned(), thread.text()));
    }
    if let Some(origin) = element
        .get_child("origin-id", NS_SID)
        .and_then(|o| o.attr("id"))
    {
        metadata.push(("xmpp.origin_id".to_owned(), origin.to_owned()));
    }
    let wants_receipt = header.id.is_some() && element.has_child("request", NS_RECEIPTS);
    let subject = element
        .get_child("subject", NS_COMPONENT)
        .map(Element::text)
        .filter(|s| !s.is_empty());
    Incoming::Chat(
        ChatMessage {
            header,
            from,
            to,
            body,
            subject,
            metadata,
            wants_receipt,
        },
        reports,
    )
}

/// The bare form of a full or bare JID, normalised.
fn jid_bare(jid: &str) -> Option<String> {
    tokio_xmpp::jid::Jid::new(jid)
        .ok()
        .map(|j| j.to_bare().to_string())
}

/// The gateway address a `to` of the component stands for.
fn to_address(to: &str, component: &str) -> Result<String, NotAnAddress> {
    let jid = tokio_xmpp::jid::Jid::new(to).map_err(|e| NotAnAddress(format!("to: {e}")))?;
    if !jid.domain().as_str().eq_ignore_ascii_case(component) {
        return Err(NotAnAddress(format!("{to:?} is not on {component}")));
    }
    let node = jid
        .node()
        .ok_or_else(|| NotAnAddress(format!("{to:?} has no node: it is the component itself")))?;
    address_of_node(node.as_str(), component)
}

fn error_of(element: &Element) -> (String, String) {
    let Some(error) = element.get_child("error", NS_COMPONENT) else {
        return (
            "undefined-condition".into(),
            "an error without <error/>".into(),
        );
    };
    let condition = error
        .children()
        .find(|c| c.ns() == NS_STANZAS && c.name() != "text")
        .map(|c| c.name().to_owned())
        .unwrap_or_else(|| "undefined-condition".into());
    let text = error
        .get_child("text", NS_STANZAS)
        .map(Element::text)
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| condition.clone());
    (condition, text)
}

fn classify_presence(element: &Element, header: Header) -> Incoming {
    let kind = element.attr("type");
    match kind {
        Some("subscribe") => return Incoming::Subscribe(header),
        Some("unsubscribe") => return Incoming::Unsubscribe(header),
        Some("probe") => return Incoming::Probe(header),
        None | Some("unavailable") => {}
        // subscribed, unsubscribed, error: nothing to answer.
        Some(_) => return Incoming::Ignore("a presence type that needs no answer"),
    }
    let Some(bare) = jid_bare(&header.from) else {
        return Incoming::Ignore("a presence from a malformed JID");
    };
    let show = if kind == Some("unavailable") {
        Show::Unavailable
    } else {
        match element
            .get_child("show", NS_COMPONENT)
            .map(Element::text)
            .as_deref()
            .map(str::trim)
        {
            Some("away") => Show::Away,
            Some("dnd") => Show::Dnd,
            Some("xa") => Show::Xa,
            _ => Show::Available,
        }
    };
    let status = element
        .get_child("status", NS_COMPONENT)
        .map(Element::text)
        .filter(|s| !s.is_empty());
    Incoming::Presence {
        header,
        contact: format!("xmpp:{bare}"),
        show,
        status,
    }
}

fn classify_iq(element: &Element, header: Header) -> Incoming {
    match element.attr("type") {
        Some("get") | Some("set") => {}
        Some("result") | Some("error") => return Incoming::Ignore("an iq answer"),
        _ => {
            return Incoming::Refuse(header, Condition::BadRequest, "iq without a type".into());
        }
    }
    if header.id.is_none() {
        return Incoming::Refuse(header, Condition::BadRequest, "iq without an id".into());
    }
    let get = element.attr("type") == Some("get");
    let mut children = element.children();
    match (children.next(), children.next()) {
        (Some(p), None) if get && p.is("ping", NS_PING) => Incoming::Ping(header),
        (Some(p), None) if get && p.is("query", NS_DISCO_INFO) => Incoming::DiscoInfo(header),
        (Some(_), None) => Incoming::Refuse(
            header,
            Condition::ServiceUnavailable,
            "this request is not served here".into(),
        ),
        _ => Incoming::Refuse(
            header,
            Condition::BadRequest,
            "an iq needs exactly one payload".into(),
        ),
    }
}

fn attr(builder: ElementBuilder, name: &str, value: &str) -> ElementBuilder {
    match NcName::try_from(name) {
        Ok(name) => builder.attr(name, value),
        Err(_) => builder,
    }
}

/// A stanza of `name` from `from` to `to`.
fn stanza(name: &str, from: &str, to: &str) -> ElementBuilder {
    let builder = Element::builder(name, NS_COMPONENT);
    attr(attr(builder, "from", from), "to", to)
}

/// The error answering a stanza (`name` is `message`, `presence` or `iq`).
pub fn error_answer(name: &str, header: &Header, condition: Condition, text: &str) -> Element {
    let mut builder = attr(stanza(name, &header.to, &header.from), "type", "error");
    if let Some(id) = &header.id {
        builder = attr(builder, "id", id);
    }
    let error = attr(
        Element::builder("error", NS_COMPONENT),
        "type",
        condition.error_type(),
    )
    .append(Element::builder(condition.name(), NS_STANZAS))
    .append(Element::builder("text", NS_STANZAS).append(text.to_owned()));
    builder.append(error).build()
}

/// The XEP-0184 receipt for a message.
pub fn receipt(header: &Header, id: &str) -> Element {
    stanza("message", &header.to, &header.from)
        .append(attr(Element::builder("received", NS_RECEIPTS), "id", id))
        .build()
}

/// An empty iq result.
pub fn iq_result(header: &Header, payload: Option<Element>) -> Element {
    let mut builder = attr(stanza("iq", &header.to, &header.from), "type", "result");
    if let Some(id) = &header.id {
        builder = attr(builder, "id", id);
    }
    if let Some(payload) = payload {
        builder = builder.append(payload);
    }
    builder.build()
}

/// What the component says it is (XEP-0030): an SMS gateway with receipts and markers.
pub fn disco_info() -> Element {
    let identity = attr(
        attr(
            attr(
                Element::builder("identity", NS_DISCO_INFO),
                "category",
                "gateway",
            ),
            "type",
            "sms",
        ),
        "name",
        "Switchboard",
    );
    let mut builder = Element::builder("query", NS_DISCO_INFO).append(identity);
    for feature in [NS_DISCO_INFO, NS_PING, NS_RECEIPTS, NS_MARKERS] {
        builder = builder.append(attr(
            Element::builder("feature", NS_DISCO_INFO),
            "var",
            feature,
        ));
    }
    builder.build()
}

/// A presence of `kind` (`subscribed`, `subscribe`, `unsubscribed`; `None` for
/// available) from `from` to `to`.
pub fn presence(from: &str, to: &str, kind: Option<&str>) -> Element {
    let builder = stanza("presence", from, to);
    match kind {
        Some(kind) => attr(builder, "type", kind).build(),
        None => builder.build(),
    }
}

/// An XEP-0199 ping from the component to itself, through the server.
pub fn ping(component: &str, id: &str) -> Element {
    attr(
        attr(stanza("iq", component, component), "type", "get"),
        "id",
        id,
    )
    .append(Element::builder("ping", NS_PING))
    .build()
}

/// An outbound chat message.
pub struct Outbound<'a> {
    /// `node@component`.
    pub from: &'a str,
    /// The recipient's JID.
    pub to: &'a str,
    /// The stanza id (the upstream id).
    pub id: &'a str,
    /// The body.
    pub body: &'a str,
    /// `<subject/>`.
    pub subject: Option<&'a str>,
    /// `<thread/>`.
    pub thread: Option<&'a str>,
    /// Ask for a XEP-0184 receipt and mark it XEP-0333 markable.
    pub request_receipt: bool,
}

impl Outbound<'_> {
    /// The `<message type='chat'/>`.
    pub fn to_element(&self) -> Element {
        let mut builder = attr(
            attr(stanza("message", self.from, self.to), "type", "chat"),
            "id",
            self.id,
        );
        if let Some(subject) = self.subject {
            builder = builder
                .append(Element::builder("subject", NS_COMPONENT).append(subject.to_owned()));
        }
        builder =
            builder.append(Element::builder("body", NS_COMPONENT).append(self.body.to_owned()));
        if let Some(thread) = self.thread {
            builder =
                builder.append(Element::builder("thread", NS_COMPONENT).append(thread.to_owned()));
        }
        if self.request_receipt {
            builder = builder
                .append(Element::builder("request", NS_RECEIPTS))
                .append(Element::builder("markable", NS_MARKERS));
        }
        builder
            .append(attr(Element::builder("origin-id", NS_SID), "id", self.id))
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = "sms.localhost";

    fn parse(xml: &str) -> Incoming {
        classify_xml(xml.as_bytes(), C).expect("well-formed")
    }

    #[test]
    fn a_chat_message_to_a_number_is_an_sms() {
        let incoming = parse(
            "<message type='chat' id='m1' from='Alice@localhost/phone' to='+14155550100@sms.localhost'>\
             <body>hi</body><thread>t1</thread><origin-id xmlns='urn:xmpp:sid:0' id='o1'/>\
             <request xmlns='urn:xmpp:receipts'/></message>",
        );
        let Incoming::Chat(chat, reports) = incoming else {
            panic!("{incoming:?}")
        };
        assert!(reports.is_empty());
        assert_eq!(chat.from, "xmpp:alice@localhost");
        assert_eq!(chat.to, "+14155550100");
        assert_eq!(chat.body, "hi");
        assert!(chat.wants_receipt);
        assert_eq!(
            chat.metadata,
            [
                ("xmpp.id".to_owned(), "m1".to_owned()),
                ("xmpp.thread".to_owned(), "t1".to_owned()),
                ("xmpp.origin_id".to_owned(), "o1".to_owned())
            ]
        );
    }

    #[test]
    fn receipts_markers_and_errors_are_reports() {
        assert_eq!(
            parse(
                "<message from='a@localhost/x' to='+1@sms.localhost'><received xmlns='urn:xmpp:receipts' id='r1'/></message>"
            ),
            Incoming::Reports(vec![Report::Received("r1".into())])
        );
        assert_eq!(
            parse(
                "<message from='a@localhost/x' to='+1@sms.localhost'><displayed xmlns='urn:xmpp:chat-markers:0' id='r1'/></message>"
            ),
            Incoming::Reports(vec![Report::Displayed("r1".into())])
        );
        assert_eq!(
            parse(
                "<message type='error' id='r2' from='a@localhost' to='+1@sms.localhost'><error type='cancel'>\
                   <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
            ),
            Incoming::Reports(vec![Report::Error {
                id: "r2".into(),
                condition: "service-unavailable".into(),
                text: "service-unavailable".into()
            }])
        );
    }

    #[test]
    fn bad_messages_are_refused_with_their_condition() {
        let condition = |xml: &str| match parse(xml) {
            Incoming::Refuse(_, c, _) => c,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            condition(
                "<message type='chat' from='a@localhost' to='+12ab@sms.localhost'><body>x</body></message>"
            ),
            Condition::JidMalformed
        );
        assert_eq!(
            condition(
                "<message type='chat' from='a@localhost' to='sms.localhost'><body>x</body></message>"
            ),
            Condition::JidMalformed
        );
        let long = format!(
            "<message type='chat' from='a@localhost' to='+15555550100@sms.localhost'><body>{}</body></message>",
            "x".repeat(10_001)
        );
        assert_eq!(condition(&long), Condition::PolicyViolation);
        assert_eq!(
            condition(
                "<iq type='get' id='q' from='a@localhost' to='sms.localhost'><query xmlns='jabber:iq:version'/></iq>"
            ),
            Condition::ServiceUnavailable
        );
    }

    #[test]
    fn an_error_answer_swaps_the_addresses() {
        let header = Header {
            from: "a@localhost/x".into(),
            to: "+1@sms.localhost".into(),
            id: Some("i".into()),
        };
        let e = error_answer("message", &header, Condition::ItemNotFound, "nobody");
        assert_eq!(e.attr("to"), Some("a@localhost/x"));
        assert_eq!(e.attr("from"), Some("+1@sms.localhost"));
        assert_eq!(e.attr("type"), Some("error"));
        let error = e.get_child("error", NS_COMPONENT).expect("error");
        assert_eq!(error.attr("type"), Some("cancel"));
        assert!(error.has_child("item-not-found", NS_STANZAS));
    }

    /// The no-panic property of the fuzz target, over inputs that have broken parsers.
    #[test]
    fn nasty_stanzas_never_panic() {
        let corpus = [
            "",
            "<",
            "<message/>",
            "<message to='' from=''><body/></message>",
            "<message to='\\@sms.localhost' from='a@b'><body>x</body></message>",
            "<message to='a\\@sms.localhost' from='a@b'><body>x</body></message>",
            "<message to='a\\4@sms.localhost' from='a@b'><body>x</body></message>",
            "<message to='é\\@sms.localhost' from='a@b'><body>x</body></message>",
            "<message to='@sms.localhost' from='@'><body>x</body></message>",
            "<message to='+@sms.localhost' from='a@b/'><body>x</body></message>",
            "<message to='a@sms.localhost/r' from='a@b' type='bogus'><body>x</body></message>",
            "<message type='error'/>",
            "<message type='error' id='x'><error><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
            "<presence/>",
            "<presence type='unavailable' from='\u{0}'/>",
            "<presence from='a@b'><show>dnd</show><show>xa</show></presence>",
            "<iq/>",
            "<iq type='get' id='1'/>",
            "<iq type='get' id='1'><a/><b/></iq>",
            "<handshake/>",
            "<x xmlns='other'><message/></x>",
            "<message xmlns='jabber:client' to='+1@sms.localhost'><body>x</body></message>",
        ];
        for xml in corpus {
            let _ = classify_xml(xml.as_bytes(), C);
        }
    }
}
