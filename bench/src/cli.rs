//! Command-line options.

use std::time::Duration;

use clap::Parser;

use crate::{Config, Load};

/// Closed-loop HTTP/1.1 load generator for Switchboard's `POST /v1/messages`.
///
/// Keeps `--concurrency` keep-alive connections busy, one request in flight on each, and reports
/// accepted (202) messages per second and latency percentiles.
#[derive(Debug, Clone, Parser)]
#[command(name = "switchboard-bench", version)]
pub struct Cli {
    /// Base URL of the gateway (plain http only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// API key, sent as `Authorization: Bearer <key>`.
    #[arg(long, env = "SWITCHBOARD_API_KEY", hide_env_values = true)]
    pub api_key: String,

    /// Number of keep-alive connections, each with one request in flight.
    #[arg(short = 'c', long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,

    /// Seconds to measure for (after the warmup).
    #[arg(short = 'd', long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub duration: Duration,

    /// Send this many measured requests in total instead of running for `--duration`.
    #[arg(short = 'n', long, value_name = "N", conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,

    /// Seconds of load before measuring starts, not counted [default: 2, or 0 with --requests].
    #[arg(short = 'w', long, value_name = "SECS", value_parser = parse_secs)]
    pub warmup: Option<Duration>,

    /// Destination prefix; each request gets `<prefix><zero-padded counter>`, at least 11 digits.
    #[arg(long, default_value = "+1555", allow_hyphen_values = true)]
    pub to_prefix: String,

    /// One destination for every request (a JID, SIP URI or mailbox with one receiver), instead of --to-prefix.
    #[arg(long, conflicts_with = "to_prefix")]
    pub to: Option<String>,

    /// Message text.
    #[arg(long, default_value = "Benchmark message")]
    pub text: String,

    /// Channel to ask for (added to the body as "channel").
    #[arg(long)]
    pub channel: Option<String>,

    /// Send a unique `Idempotency-Key` with every request.
    #[arg(long)]
    pub idempotency: bool,

    /// Give up on a request (and its connection) after this many seconds.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs)]
    pub timeout: Duration,

    /// Tokio worker threads for the client (1 = a single-threaded runtime).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: u32,

    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Parses a non-negative, finite number of seconds (fractions allowed).
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}` is not a valid number of seconds"))
}

impl Cli {
    /// The load configuration these options describe.
    pub fn config(&self) -> Config {
        let (load, default_warmup) = match self.requests {
            Some(n) => (Load::Requests(n), Duration::ZERO),
            None => (Load::Duration(self.duration), Duration::from_secs(2)),
        };
        Config {
            url: self.url.clone(),
            api_key: self.api_key.clone(),
            concurrency: self.concurrency as usize,
            load,
            warmup: self.warmup.unwrap_or(default_warmup),
            to_prefix: self.to_prefix.clone(),
            to: self.to.clone(),
            text: self.text.clone(),
            channel: self.channel.clone(),
            idempotency: self.idempotency,
            timeout: self.timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("switchboard-bench").chain(args.iter().copied()))
    }

    #[test]
    fn defaults() -> anyhow::Result<()> {
        let cli = parse(&["--api-key", "k"])?;
        assert_eq!(cli.threads, 1);
        assert!(!cli.json);
        let c = cli.config();
        assert_eq!(c.url, "http://127.0.0.1:8080");
        assert_eq!(c.api_key, "k");
        assert_eq!(c.concurrency, 64);
        assert_eq!(c.load, Load::Duration(Duration::from_secs(10)));
        assert_eq!(c.warmup, Duration::from_secs(2));
        assert_eq!(c.to_prefix, "+1555");
        assert_eq!(c.text, "Benchmark message");
        assert_eq!(c.channel, None);
        assert!(!c.idempotency);
        Ok(())
    }

    #[test]
    fn requests_mode() -> anyhow::Result<()> {
        let c = parse(&["--api-key", "k", "--requests", "500", "-c", "8"])?.config();
        assert_eq!(c.load, Load::Requests(500));
        assert_eq!(c.warmup, Duration::ZERO);
        assert_eq!(c.concurrency, 8);
        let c = parse(&["--api-key", "k", "-n", "5", "--warmup", "0.5"])?.config();
        assert_eq!(c.warmup, Duration::from_millis(500));
        Ok(())
    }

    #[test]
    fn other_options() -> anyhow::Result<()> {
        let cli = parse(&[
            "--api-key=k",
            "--duration",
            "2.5",
            "--warmup",
            "0",
            "--to-prefix",
            "+4420",
            "--text",
            "hi",
            "--channel",
            "sms",
            "--idempotency",
            "--json",
            "--threads",
            "2",
        ])?;
        assert!(cli.json);
        assert_eq!(cli.threads, 2);
        let c = cli.config();
        assert_eq!(c.load, Load::Duration(Duration::from_millis(2500)));
        assert_eq!(c.warmup, Duration::ZERO);
        assert_eq!(c.to_prefix, "+4420");
        assert_eq!(c.channel.as_deref(), Some("sms"));
        assert!(c.idempotency);
        Ok(())
    }

    #[test]
    fn rejects_bad_input() {
        // Missing --api-key (unless the environment provides one).
        if std::env::var_os("SWITCHBOARD_API_KEY").is_none() {
            assert!(parse(&[]).is_err());
        }
        assert!(parse(&["--api-key", "k", "--requests", "5", "--duration", "3"]).is_err());
        assert!(parse(&["--api-key", "k", "-c", "0"]).is_err());
        assert!(parse(&["--api-key", "k", "--requests", "0"]).is_err());
        assert!(parse(&["--api-key", "k", "--duration", "-1"]).is_err());
        assert!(parse(&["--api-key", "k", "--duration", "soon"]).is_err());
        assert!(parse(&["--api-key", "k", "--warmup", "NaN"]).is_err());
        assert!(parse(&["--api-key", "k", "--threads", "0"]).is_err());
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_secs("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_secs("0.25"), Ok(Duration::from_millis(250)));
        assert!(parse_secs("inf").is_err());
        assert!(parse_secs("").is_err());
    }
}
