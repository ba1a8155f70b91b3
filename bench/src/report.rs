//! The result of a run, and its text and JSON forms.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Highest latency the histogram tracks exactly, in microseconds (longer ones are clamped).
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A new latency histogram: microseconds, 3 significant digits (better than 0.1%).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
        .expect("1..=MAX_LATENCY_US at 3 digits is valid")
}

/// A failed request that was not an HTTP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TransportError {
    /// Could not (re)connect.
    Connect,
    /// The connection failed while sending or receiving.
    Io,
    /// No complete response within `--timeout`.
    Timeout,
}

impl TransportError {
    pub const ALL: [TransportError; 3] = [Self::Connect, Self::Io, Self::Timeout];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Io => "io",
            Self::Timeout => "timeout",
        }
    }
}

/// One distinct error seen during the run (only the first few are kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorSample {
    /// The HTTP status, or `None` for a transport error.
    pub status: Option<u16>,
    /// The response body (truncated), or the transport error's description.
    pub body: String,
}

impl std::fmt::Display for ErrorSample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "HTTP {s}: {}", self.body),
            None => f.write_str(&self.body),
        }
    }
}

/// What a run measured. Only requests started after the warmup are counted.
#[derive(Debug, Clone)]
pub struct Report {
    /// Connections used.
    pub concurrency: usize,
    /// Requests made (responses of any status plus transport errors).
    pub requests: u64,
    /// Responses with status 202.
    pub accepted: u64,
    /// Responses with any other status, by status.
    pub errors_by_status: BTreeMap<u16, u64>,
    /// Failures without a response, by kind.
    pub transport_errors: BTreeMap<TransportError, u64>,
    /// Connections made after the initial ones (the server closed one, or it failed).
    pub reconnects: u64,
    /// Requests made during the warmup (not counted anywhere else).
    pub warmup_requests: u64,
    /// From the end of the warmup to the last counted response.
    pub elapsed: Duration,
    /// Latency of accepted requests, in microseconds.
    pub latency_us: Histogram<u64>,
    /// The first few distinct errors.
    pub error_samples: Vec<ErrorSample>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Rounds to 3 decimals (microseconds, when the unit is milliseconds).
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl Report {
    /// All counted requests that were not accepted.
    pub fn errors(&self) -> u64 {
        self.errors_by_status.values().sum::<u64>() + self.transport_errors.values().sum::<u64>()
    }

    /// Accepted requests per second of measured time (0 when nothing was measured).
    pub fn accepted_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.accepted as f64 / secs
        } else {
            0.0
        }
    }

    /// Latency percentiles of accepted requests; `None` if there were none.
    pub fn percentiles(&self) -> Option<Percentiles> {
        let h = &self.latency_us;
        if h.is_empty() {
            return None;
        }
        Some(Percentiles {
            p50: us_to_ms(h.value_at_quantile(0.50)),
            p90: us_to_ms(h.value_at_quantile(0.90)),
            p99: us_to_ms(h.value_at_quantile(0.99)),
            p999: us_to_ms(h.value_at_quantile(0.999)),
            max: us_to_ms(h.max()),
            mean: h.mean() / 1000.0,
        })
    }

    /// `401: 3, 500: 1, timeout: 2` (empty when there were no errors).
    fn error_breakdown(&self) -> String {
        let mut out = String::new();
        for (status, n) in &self.errors_by_status {
            let sep = if out.is_empty() { "" } else { ", " };
            let _ = write!(out, "{sep}{status}: {n}");
        }
        for (kind, n) in &self.transport_errors {
            let sep = if out.is_empty() { "" } else { ", " };
            let _ = write!(out, "{sep}{}: {n}", kind.as_str());
        }
        out
    }

    /// A few aligned lines for a human.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "connections   {}", self.concurrency);
        let _ = write!(out, "requests      {}", self.requests);
        if self.warmup_requests > 0 {
            let _ = write!(
                out,
                "  (+{} during warmup, not counted)",
                self.warmup_requests
            );
        }
        out.push('\n');
        let _ = writeln!(out, "accepted      {}  (202)", self.accepted);
        let _ = write!(out, "errors        {}", self.errors());
        let breakdown = self.error_breakdown();
        if !breakdown.is_empty() {
            let _ = write!(out, "  ({breakdown})");
        }
        out.push('\n');
        let _ = writeln!(out, "reconnects    {}", self.reconnects);
        let _ = writeln!(out, "elapsed       {:.3} s", self.elapsed.as_secs_f64());
        let _ = writeln!(out, "accepted/s    {:.1}", self.accepted_per_sec());
        match self.percentiles() {
            Some(p) => {
                let _ = writeln!(
                    out,
                    "latency ms    p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
                    p.p50, p.p90, p.p99, p.p999, p.max, p.mean
                );
            }
            None => out.push_str("latency ms    (no accepted requests)\n"),
        }
        out
    }

    /// One JSON object; latencies in milliseconds (null when nothing was accepted).
    pub fn to_json(&self) -> Value {
        let statuses: serde_json::Map<String, Value> = self
            .errors_by_status
            .iter()
            .map(|(s, n)| (s.to_string(), json!(n)))
            .collect();
        let transport: serde_json::Map<String, Value> = TransportError::ALL
            .iter()
            .map(|k| {
                (
                    k.as_str().to_owned(),
                    json!(self.transport_errors.get(k).copied().unwrap_or(0)),
                )
            })
            .collect();
        let p = self.percentiles();
        let ms = |f: fn(&Percentiles) -> f64| p.as_ref().map(|p| round3(f(p)));
        json!({
            "concurrency": self.concurrency,
            "requests": self.requests,
            "accepted": self.accepted,
            "errors": self.errors(),
            "errors_by_status": statuses,
            "transport_errors": transport,
            "reconnects": self.reconnects,
            "warmup_requests": self.warmup_requests,
            "elapsed_sec": round3(self.elapsed.as_secs_f64()),
            "accepted_per_sec": (self.accepted_per_sec() * 10.0).round() / 10.0,
            "p50_ms": ms(|p| p.p50),
            "p90_ms": ms(|p| p.p90),
            "p99_ms": ms(|p| p.p99),
            "p999_ms": ms(|p| p.p999),
            "max_ms": ms(|p| p.max),
            "mean_ms": ms(|p| p.mean),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(latencies_us: impl IntoIterator<Item = u64>) -> Report {
        let mut h = new_histogram();
        let mut n = 0;
        for v in latencies_us {
            h.saturating_record(v);
            n += 1;
        }
        Report {
            concurrency: 4,
            requests: n + 3,
            accepted: n,
            errors_by_status: BTreeMap::from([(401, 1), (500, 1)]),
            transport_errors: BTreeMap::from([(TransportError::Timeout, 1)]),
            reconnects: 2,
            warmup_requests: 7,
            elapsed: Duration::from_secs(2),
            latency_us: h,
            error_samples: Vec::new(),
        }
    }

    #[test]
    fn percentiles_are_accurate() -> anyhow::Result<()> {
        // 1..=100_000 µs uniformly: the q-quantile is q * 100 ms.
        let r = report(1..=100_000);
        let p = r
            .percentiles()
            .ok_or_else(|| anyhow::anyhow!("no percentiles"))?;
        for (got, want) in [
            (p.p50, 50.0),
            (p.p90, 90.0),
            (p.p99, 99.0),
            (p.p999, 99.9),
            (p.max, 100.0),
        ] {
            assert!((got - want).abs() / want < 0.002, "got {got}, want {want}");
        }
        assert!((p.mean - 50.0).abs() < 0.1, "mean {}", p.mean);
        Ok(())
    }

    #[test]
    fn clamps_huge_latencies() {
        let r = report([10, u64::MAX]);
        assert_eq!(r.latency_us.len(), 2);
    }

    #[test]
    fn rates_and_errors() {
        let r = report(1..=1000);
        assert_eq!(r.errors(), 3);
        assert!((r.accepted_per_sec() - 500.0).abs() < 1e-9);
        let text = r.to_text();
        assert!(text.contains("accepted/s    500.0"), "{text}");
        assert!(text.contains("401: 1, 500: 1, timeout: 1"), "{text}");
        assert!(text.contains("+7 during warmup"), "{text}");
    }

    #[test]
    fn json_shape() {
        let j = report(1..=1000).to_json();
        assert_eq!(j["accepted"], 1000);
        assert_eq!(j["requests"], 1003);
        assert_eq!(j["errors"], 3);
        assert_eq!(j["errors_by_status"]["401"], 1);
        assert_eq!(j["transport_errors"]["timeout"], 1);
        assert_eq!(j["transport_errors"]["connect"], 0);
        assert_eq!(j["accepted_per_sec"], 500.0);
        assert!(j["p50_ms"].as_f64().is_some_and(|v| (v - 0.5).abs() < 0.01));
        assert!(j["p999_ms"].is_number());
        assert!(j["max_ms"].as_f64().is_some_and(|v| (v - 1.0).abs() < 0.01));
    }

    #[test]
    fn empty_report() {
        let mut r = report([]);
        r.elapsed = Duration::ZERO;
        assert_eq!(r.accepted_per_sec(), 0.0);
        assert!(r.percentiles().is_none());
        assert!(r.to_json()["p50_ms"].is_null());
        assert!(r.to_text().contains("no accepted requests"));
    }
}
