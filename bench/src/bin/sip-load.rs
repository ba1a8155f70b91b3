//! `sip-load`: SIP MESSAGE load for Switchboard's SIP channel.
//!
//! - `inbound`: sends MESSAGEs over UDP to the gateway with a window of outstanding
//!   transactions, matches each final response by Call-ID, and prints answered/s (200
//!   means committed) and latency percentiles.
//! - `uas`: a user agent that answers every MESSAGE `200 OK` at once and prints
//!   MESSAGE/s each second (the fast answering peer for outbound runs through a gateway).
//! - `outbound`: the SIP connector itself (in process) sends MESSAGEs with a window of
//!   concurrent sends to a `uas` (its own, in process, unless `--uas` names one) and
//!   prints sends/s and latency percentiles.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use switchboard_adapter::SendOutcome;
use switchboard_model::{Channel, Direction, Message, MessageStatus};
use switchboard_sip::wire::{self, Incoming};
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

/// SIP MESSAGE load generator and answering user agent.
#[derive(Debug, Parser)]
#[command(name = "sip-load", version)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// MESSAGEs over UDP to a gateway, answered after the commit.
    Inbound {
        /// The gateway's SIP address (host:port).
        #[arg(long, default_value = "127.0.0.1:5060")]
        target: SocketAddr,
        /// The Request-URI (a tenant's address at the gateway).
        #[arg(long, default_value = "sip:+15550100@gw.example.test")]
        to: String,
        /// Outstanding transactions at once.
        #[arg(long, default_value_t = 256)]
        window: usize,
        /// Seconds measured.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Seconds of load before measuring.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Message text.
        #[arg(long, default_value = "Benchmark message")]
        text: String,
    },
    /// Answers every MESSAGE 200 at once; prints MESSAGE/s each second.
    Uas {
        /// Where to listen (UDP).
        #[arg(long, default_value = "127.0.0.1:5070")]
        listen: SocketAddr,
        /// Stop after this many seconds (default: run until killed).
        #[arg(long)]
        duration: Option<f64>,
    },
    /// The SIP connector (in process) sending to a fast answering user agent.
    Outbound {
        /// A `uas` to send to (default: one in this process).
        #[arg(long)]
        uas: Option<SocketAddr>,
        /// Concurrent sends.
        #[arg(long, default_value_t = 256)]
        window: usize,
        /// Seconds measured.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Seconds of load before measuring.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        match cli.mode {
            Mode::Inbound {
                target,
                to,
                window,
                duration,
                warmup,
                text,
            } => inbound(target, &to, window, secs(duration)?, secs(warmup)?, &text).await,
            Mode::Uas { listen, duration } => {
                let socket = UdpSocket::bind(listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen}"))?;
                println!("uas listening on udp://{}", socket.local_addr()?);
                let counter = Arc::new(AtomicU64::new(0));
                let printer = tokio::spawn(print_each_second(counter.clone()));
                let serve = uas(Arc::new(socket), counter);
                match duration {
                    Some(d) => {
                        let _ = tokio::time::timeout(secs(d)?, serve).await;
                    }
                    None => serve.await,
                }
                printer.abort();
                Ok(())
            }
            Mode::Outbound {
                uas: target,
                window,
                duration,
                warmup,
            } => outbound(target, window, secs(duration)?, secs(warmup)?).await,
        }
    })
}

fn secs(s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).context("not a number of seconds")
}

/// Latencies in microseconds.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid")
}

fn report(what: &str, count: u64, elapsed: Duration, latencies: &Histogram<u64>, others: &str) {
    let rate = count as f64 / elapsed.as_secs_f64();
    let ms = |q: f64| latencies.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{what}: {count} in {:.2} s = {rate:.0}/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms{others}",
        elapsed.as_secs_f64(),
        ms(0.5),
        ms(0.99),
        latencies.max() as f64 / 1000.0
    );
}

async fn inbound(
    target: SocketAddr,
    to: &str,
    window: usize,
    duration: Duration,
    warmup: Duration,
    text: &str,
) -> anyhow::Result<()> {
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    let local = socket.local_addr()?;
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let permits = Arc::new(Semaphore::new(window));
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    // Receiver: matches final responses to what was sent.
    let receiver = {
        let socket = socket.clone();
        let sent = sent.clone();
        let permits = permits.clone();
        tokio::spawn(async move {
            let mut latencies = histogram();
            let mut statuses: HashMap<u16, u64> = HashMap::new();
            let mut counted = 0u64;
            let mut last = Instant::now();
            let mut buf = vec![0u8; 65_536];
            loop {
                let n = match tokio::time::timeout_at(
                    (end + Duration::from_secs(5)).into(),
                    socket.recv(&mut buf),
                )
                .await
                {
                    Ok(Ok(n)) => n,
                    _ => break,
                };
                let Ok(Incoming::Response(response)) = wire::parse(&buf[..n]) else {
                    continue;
                };
                if response.status < 200 {
                    continue;
                }
                let Some(at) = sent
                    .lock()
                    .ok()
                    .and_then(|mut s| s.remove(&response.call_id))
                else {
                    continue;
                };
                permits.add_permits(1);
                let now = Instant::now();
                if at >= measure_from && at < end {
                    *statuses.entry(response.status).or_default() += 1;
                    counted += 1;
                    last = now;
                    let _ = latencies.record(now.duration_since(at).as_micros() as u64);
                }
                if now >= end && sent.lock().map(|s| s.is_empty()).unwrap_or(true) {
                    break;
                }
            }
            (latencies, statuses, counted, last)
        })
    };
    // Sender: keeps `window` transactions outstanding until the end.
    let mut i = 0u64;
    while Instant::now() < end {
        let Ok(permit) = permits.acquire().await else {
            break;
        };
        permit.forget();
        i += 1;
        let call_id = format!("load-{i}-{}@{local}", start.elapsed().as_nanos());
        let request = format!(
            "MESSAGE {to} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKload{i}x{}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:load@{local}>;tag=l{i}\r\nTo: <{to}>\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\n\r\n{text}",
            start.elapsed().as_nanos(),
            text.len()
        );
        if let Ok(mut s) = sent.lock() {
            s.insert(call_id, Instant::now());
        }
        socket.send_to(request.as_bytes(), target).await?;
    }
    let (latencies, statuses, counted, last) = receiver.await?;
    let unanswered = sent.lock().map(|s| s.len()).unwrap_or(0);
    let mut others: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect();
    others.sort();
    let measured = last
        .saturating_duration_since(measure_from)
        .max(Duration::from_millis(1));
    report(
        &format!("inbound MESSAGE (window {window})"),
        statuses.get(&200).copied().unwrap_or(0),
        measured,
        &latencies,
        &format!(
            "; answers {{{}}} of {counted}; unanswered at the end: {unanswered}",
            others.join(", ")
        ),
    );
    if statuses.get(&200).copied().unwrap_or(0) == 0 {
        bail!("no MESSAGE was answered 200");
    }
    Ok(())
}

/// Answers every MESSAGE `200 OK`, counting them.
async fn uas(socket: Arc<UdpSocket>, counter: Arc<AtomicU64>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if let Ok(Incoming::Request(request)) = wire::parse(&buf[..n]) {
            let answer = wire::response(&request.echo, 200, None, "uas", &[]);
            let _ = socket.send_to(&answer, peer).await;
            if request.method == "MESSAGE" {
                counter.fetch_add(1, Relaxed);
            }
        }
    }
}

async fn print_each_second(counter: Arc<AtomicU64>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut previous = 0;
    loop {
        ticker.tick().await;
        let now = counter.load(Relaxed);
        if now != previous {
            println!("uas: {} MESSAGE/s ({now} in all)", now - previous);
        }
        previous = now;
    }
}

async fn outbound(
    target: Option<SocketAddr>,
    window: usize,
    duration: Duration,
    warmup: Duration,
) -> anyhow::Result<()> {
    let target = match target {
        Some(target) => target,
        None => {
            let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
            let addr = socket.local_addr()?;
            tokio::spawn(uas(socket, Arc::new(AtomicU64::new(0))));
            addr
        }
    };
    let config: switchboard_sip::SipConfig = toml::from_str(&format!(
        "listen = \"127.0.0.1:0\"\ndomain = \"gw.example.test\"\ntenant = \"bench\"\nconcurrency = {window}"
    ))
    .context("config")?;
    let channel = switchboard_sip::build(&config).map_err(anyhow::Error::msg)?;
    let adapter = channel.adapters.first().context("no adapter")?.clone();
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let latencies = Arc::new(Mutex::new(histogram()));
    let counted = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..window {
        let adapter = adapter.clone();
        let latencies = latencies.clone();
        let counted = counted.clone();
        let failed = failed.clone();
        tasks.spawn(async move {
            let mut i = 0u64;
            while Instant::now() < end {
                i += 1;
                let message = Message::new(
                    "bench",
                    Direction::Outbound,
                    Channel::Sip,
                    format!("sip:bench{w}x{i}@{target}"),
                    "Benchmark message",
                    MessageStatus::Sending,
                    chrono::Utc::now(),
                );
                let at = Instant::now();
                let outcome = adapter.send(&message).await;
                let now = Instant::now();
                if at >= measure_from && now <= end {
                    match outcome {
                        SendOutcome::Accepted { .. } => {
                            counted.fetch_add(1, Relaxed);
                            if let Ok(mut h) = latencies.lock() {
                                let _ = h.record(now.duration_since(at).as_micros() as u64);
                            }
                        }
                        _ => {
                            failed.fetch_add(1, Relaxed);
                        }
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let latencies = latencies
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| histogram());
    report(
        &format!("outbound MESSAGE (window {window}) to {target}"),
        counted.load(Relaxed),
        duration,
        &latencies,
        &format!("; not accepted: {}", failed.load(Relaxed)),
    );
    Ok(())
}
