//! Prometheus metrics, all registered in one place.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use switchboard_model::Channel;

/// Labels of an HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route template, e.g. `/v1/messages/{id}`.
    pub route: String,
    /// GET, POST, ...
    pub method: String,
    /// The status code.
    pub status: u16,
}

/// Labels naming a channel.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    /// sms, sip, xmpp or email.
    pub channel: &'static str,
}

/// Labels of a send attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    /// The connector.
    pub connector: String,
    /// `accepted`, `retry` or `failed`.
    pub outcome: &'static str,
}

/// Labels of a webhook delivery attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// `delivered`, `gone`, `failed` or `refused`.
    pub outcome: &'static str,
}

/// Every metric the gateway exports.
pub struct Metrics {
    attempts: Family<AttemptLabels, Counter>,
    accept_to_sent: Histogram,
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<HttpLabels, Histogram>,
    accepted: Family<ChannelLabels, Counter>,
    outbox_depth: Gauge,
    store_commits: Gauge,
    webhook_attempts: Family<WebhookLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh set of metrics.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("switchboard");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "REST API requests by route, method and status",
            http_requests.clone(),
        );
        let http_duration = Family::<HttpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ])
        });
        registry.register(
            "http_request_duration_seconds",
            "REST API request latency",
            http_duration.clone(),
        );
        let accepted = Family::<ChannelLabels, Counter>::default();
        registry.register(
            "messages_accepted",
            "Messages accepted and stored, by channel",
            accepted.clone(),
        );
        let attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "dispatch_attempts",
            "Send attempts by connector and outcome",
            attempts.clone(),
        );
        let accept_to_sent = Histogram::new([
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0,
        ]);
        registry.register(
            "accept_to_sent_seconds",
            "From acceptance to the next hop's acceptance",
            accept_to_sent.clone(),
        );
        let outbox_depth = Gauge::default();
        registry.register(
            "outbox_depth",
            "Messages waiting in the outbox",
            outbox_depth.clone(),
        );
        let store_commits = Gauge::default();
        registry.register(
            "store_commits",
            "Transactions committed by the group-commit writer since start",
            store_commits.clone(),
        );
        let webhook_attempts = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "webhook_attempts",
            "Webhook delivery attempts by outcome",
            webhook_attempts.clone(),
        );
        Metrics {
            attempts,
            accept_to_sent,
            registry,
            http_requests,
            http_duration,
            accepted,
            outbox_depth,
            store_commits,
            webhook_attempts,
        }
    }

    /// Records one answered HTTP request.
    pub fn http_request(&self, labels: HttpLabels, seconds: f64) {
        self.http_duration.get_or_create(&labels).observe(seconds);
        self.http_requests.get_or_create(&labels).inc();
    }

    /// Records one send attempt and, when the next hop took it, how long that took
    /// from acceptance.
    pub fn dispatch_attempt(
        &self,
        connector: &str,
        result: &switchboard_store::AttemptResult,
        message: &switchboard_model::Message,
    ) {
        use switchboard_store::AttemptResult;
        let outcome = match result {
            AttemptResult::Accepted { .. } => {
                let waited = (chrono::Utc::now() - message.created_at).num_microseconds();
                self.accept_to_sent
                    .observe(waited.unwrap_or_default().max(0) as f64 / 1e6);
                "accepted"
            }
            AttemptResult::Retry { .. } => "retry",
            AttemptResult::Failed { .. } => "failed",
        };
        self.attempts
            .get_or_create(&AttemptLabels {
                connector: connector.to_owned(),
                outcome,
            })
            .inc();
    }

    /// Records one webhook delivery attempt.
    pub fn webhook_attempt(&self, outcome: switchboard_webhooks::Outcome) {
        self.webhook_attempts
            .get_or_create(&WebhookLabels {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// Records one accepted message.
    pub fn message_accepted(&self, channel: Channel) {
        self.accepted
            .get_or_create(&ChannelLabels {
                channel: channel.as_str(),
            })
            .inc();
    }

    /// The Prometheus text exposition, with the gauges read from the store just now.
    pub fn render(&self, outbox_depth: u64, store_commits: u64) -> String {
        self.outbox_depth
            .set(i64::try_from(outbox_depth).unwrap_or(i64::MAX));
        self.store_commits
            .set(i64::try_from(store_commits).unwrap_or(i64::MAX));
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        text
    }
}
