//! `smtp-load`: SMTP load for Switchboard's email channel.
//!
//! - `inbound`: several SMTP connections to the gateway's listener, each sending mail
//!   after mail with PIPELINING (MAIL, RCPT and DATA in one write, then the data); prints
//!   mails/s answered `250` (which the gateway sends only after the commit) and latency
//!   percentiles from the first command of a mail to its `250`.
//! - `sink`: a relay that answers everything `250` at once (with PIPELINING) and prints
//!   mails/s each second: the fast relay for outbound runs.
//! - `outbound`: the email connector itself (in process, lettre with its connection
//!   pool) sends mails with a window of concurrent sends to a `sink` (its own, in
//!   process, unless `--relay` names one) and prints sends/s and latency percentiles.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use switchboard_adapter::{Adapter, SendOutcome};
use switchboard_model::{Channel, Direction, Message, MessageStatus};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};

/// SMTP load generator and relay sink.
#[derive(Debug, Parser)]
#[command(name = "smtp-load", version)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Mail to a gateway's SMTP listener, answered 250 after the commit.
    Inbound {
        /// The gateway's SMTP address (host:port).
        #[arg(long, default_value = "127.0.0.1:2525")]
        target: SocketAddr,
        /// The recipient (an address a tenant owns).
        #[arg(long, default_value = "support@mail.example.test")]
        to: String,
        /// Connections, each with one mail in flight.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Seconds measured.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Seconds of load before measuring.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Bytes of body text per mail.
        #[arg(long, default_value_t = 500)]
        body_bytes: usize,
    },
    /// A relay that answers every mail 250 at once; prints mails/s each second.
    Sink {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:2526")]
        listen: SocketAddr,
    },
    /// The email connector sending to a sink.
    Outbound {
        /// A sink's address; without it, one runs in process.
        #[arg(long)]
        relay: Option<SocketAddr>,
        /// Concurrent sends (also the connector's pool size).
        #[arg(long, default_value_t = 32)]
        window: usize,
        /// Seconds measured.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Seconds of load before measuring.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().mode {
        Mode::Inbound {
            target,
            to,
            connections,
            duration,
            warmup,
            body_bytes,
        } => inbound(target, &to, connections, duration, warmup, body_bytes).await,
        Mode::Sink { listen } => {
            let listener = TcpListener::bind(listen).await?;
            println!("sink listening on {}", listener.local_addr()?);
            let count = Arc::new(AtomicU64::new(0));
            let printer = count.clone();
            tokio::spawn(async move {
                let mut last = 0;
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let now = printer.load(Relaxed);
                    if now != last {
                        println!("{} mails/s", now - last);
                    }
                    last = now;
                }
            });
            sink(listener, count).await
        }
        Mode::Outbound {
            relay,
            window,
            duration,
            warmup,
        } => outbound(relay, window, duration, warmup).await,
    }
}

/// Percentiles of a latency histogram in microseconds.
fn print_latency(histogram: &Histogram<u64>) {
    println!(
        "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        histogram.value_at_quantile(0.50) as f64 / 1000.0,
        histogram.value_at_quantile(0.90) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
        histogram.max() as f64 / 1000.0,
    );
}

async fn inbound(
    target: SocketAddr,
    to: &str,
    connections: usize,
    duration: f64,
    warmup: f64,
    body_bytes: usize,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(warmup);
    let end = measure_from + Duration::from_secs_f64(duration);
    let body: String = "Benchmark mail body text. "
        .chars()
        .cycle()
        .take(body_bytes)
        .collect::<String>()
        .as_bytes()
        .chunks(76)
        .map(|line| format!("{}\r\n", String::from_utf8_lossy(line)))
        .collect();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let to = to.to_owned();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            connection(c, target, &to, &body, measure_from, end).await
        }));
    }
    let mut histogram = Histogram::<u64>::new(3)?;
    let mut ok = 0u64;
    let mut refused = 0u64;
    for task in tasks {
        let (h, o, r) = task.await??;
        histogram.add(h)?;
        ok += o;
        refused += r;
    }
    println!(
        "inbound: {connections} connections, {duration} s: {ok} mails answered 250 ({:.0} mails/s), {refused} refused",
        ok as f64 / duration
    );
    print_latency(&histogram);
    Ok(())
}

/// One client connection sending mails until `end`; counts those answered inside the
/// measured window.
async fn connection(
    c: usize,
    target: SocketAddr,
    to: &str,
    body: &str,
    measure_from: Instant,
    end: Instant,
) -> anyhow::Result<(Histogram<u64>, u64, u64)> {
    let stream = TcpStream::connect(target)
        .await
        .with_context(|| format!("connect to {target}"))?;
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut writer = BufWriter::new(write);
    let mut histogram = Histogram::<u64>::new(3)?;
    let (mut ok, mut refused) = (0u64, 0u64);
    expect(&mut reader, "220").await?;
    writer.write_all(b"EHLO load.example.org\r\n").await?;
    writer.flush().await?;
    expect(&mut reader, "250").await?;
    let mut n = 0u64;
    while Instant::now() < end {
        n += 1;
        let began = Instant::now();
        writer
            .write_all(
                format!("MAIL FROM:<load{c}@example.org>\r\nRCPT TO:<{to}>\r\nDATA\r\n").as_bytes(),
            )
            .await?;
        writer.flush().await?;
        expect(&mut reader, "250").await?;
        expect(&mut reader, "250").await?;
        expect(&mut reader, "354").await?;
        writer
            .write_all(
                format!(
                    "From: Load {c} <load{c}@example.org>\r\nTo: <{to}>\r\n\
                     Subject: load {c}/{n}\r\nMessage-ID: <{c}.{n}@load.example.org>\r\n\r\n\
                     {body}.\r\n"
                )
                .as_bytes(),
            )
            .await?;
        writer.flush().await?;
        let answer = reply(&mut reader).await?;
        let now = Instant::now();
        if now >= measure_from && now < end {
            if answer.starts_with("250") {
                ok += 1;
                histogram.record(u64::try_from((now - began).as_micros()).unwrap_or(u64::MAX))?;
            } else {
                refused += 1;
            }
        }
    }
    writer.write_all(b"QUIT\r\n").await?;
    writer.flush().await?;
    Ok((histogram, ok, refused))
}

/// One whole reply (the last line of a multi-line one).
async fn reply(reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> anyhow::Result<String> {
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            bail!("the server closed the connection");
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(line);
        }
    }
}

async fn expect(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    code: &str,
) -> anyhow::Result<()> {
    let line = reply(reader).await?;
    if !line.starts_with(code) {
        bail!("expected {code}, got {line:?}");
    }
    Ok(())
}

/// Serves every connection: everything 250, DATA 354, each mail's end 250.
async fn sink(listener: TcpListener, count: Arc<AtomicU64>) -> anyhow::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let count = count.clone();
        tokio::spawn(async move {
            let _ = sink_session(stream, &count).await;
        });
    }
}

async fn sink_session(stream: TcpStream, count: &AtomicU64) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut writer = BufWriter::new(write);
    writer.write_all(b"220 sink ESMTP\r\n").await?;
    writer.flush().await?;
    let mut line = Vec::new();
    let mut in_data = false;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        if in_data {
            if line == b".\r\n" || line == b".\n" {
                in_data = false;
                count.fetch_add(1, Relaxed);
                writer.write_all(b"250 2.0.0 OK\r\n").await?;
            }
        } else {
            let verb = line
                .get(..4)
                .map(|v| v.to_ascii_uppercase())
                .unwrap_or_default();
            match verb.as_slice() {
                b"EHLO" => {
                    writer
                        .write_all(
                            b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
                        )
                        .await?
                }
                b"DATA" => {
                    in_data = true;
                    writer.write_all(b"354 go ahead\r\n").await?;
                }
                b"QUIT" => {
                    writer.write_all(b"221 bye\r\n").await?;
                    writer.flush().await?;
                    return Ok(());
                }
                _ => writer.write_all(b"250 OK\r\n").await?,
            }
        }
        if reader.buffer().is_empty() {
            writer.flush().await?;
        }
    }
}

async fn outbound(
    relay: Option<SocketAddr>,
    window: usize,
    duration: f64,
    warmup: f64,
) -> anyhow::Result<()> {
    let relay = match relay {
        Some(relay) => relay,
        None => {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let count = Arc::new(AtomicU64::new(0));
            tokio::spawn(async move { sink(listener, count).await });
            addr
        }
    };
    let config: switchboard_email::EmailConfig = toml::from_str(&format!(
        "listen = \"127.0.0.1:0\"\ndomains = [\"mail.example.test\"]\ntenant = \"bench\"\n\
         hostname = \"gw.example.test\"\nrelay = \"smtp://{relay}\"\n\
         relay_starttls = \"never\"\nconcurrency = {window}\n"
    ))?;
    let connector = switchboard_email::relay::Relay::new(&config, &format!("smtp://{relay}"))
        .map_err(anyhow::Error::msg)?;
    let connector = Arc::new(connector);
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(warmup);
    let end = measure_from + Duration::from_secs_f64(duration);
    let mut tasks = Vec::new();
    for w in 0..window {
        let connector = connector.clone();
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new(3)?;
            let (mut ok, mut failed) = (0u64, 0u64);
            let mut n = 0u64;
            while Instant::now() < end {
                n += 1;
                let mut message = Message::new(
                    "bench",
                    Direction::Outbound,
                    Channel::Email,
                    format!("rcpt{w}@example.org"),
                    format!("Benchmark mail {w}/{n}: Grüße aus der Lasttest-Schleife."),
                    MessageStatus::Sending,
                    chrono::Utc::now(),
                );
                message.from = Some("support@mail.example.test".into());
                message.subject = Some(format!("load {w}/{n}"));
                let began = Instant::now();
                let outcome = connector.send(&message).await;
                let now = Instant::now();
                if now >= measure_from && now < end {
                    match outcome {
                        SendOutcome::Accepted { .. } => {
                            ok += 1;
                            histogram.record(
                                u64::try_from((now - began).as_micros()).unwrap_or(u64::MAX),
                            )?;
                        }
                        _ => failed += 1,
                    }
                }
            }
            anyhow::Ok((histogram, ok, failed))
        }));
    }
    let mut histogram = Histogram::<u64>::new(3)?;
    let (mut ok, mut failed) = (0u64, 0u64);
    for task in tasks {
        let (h, o, f) = task.await??;
        histogram.add(h)?;
        ok += o;
        failed += f;
    }
    println!(
        "outbound: window {window}, {duration} s: {ok} mails sent ({:.0} mails/s), {failed} not sent",
        ok as f64 / duration
    );
    print_latency(&histogram);
    Ok(())
}
