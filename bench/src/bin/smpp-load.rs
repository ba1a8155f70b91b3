//! `smpp-load`: a carrier (ESME) loading Switchboard's SMPP server with submit_sm.
//!
//! Opens `--binds` transmitter binds, keeps `--window` submit_sm outstanding on each, and
//! prints submit_sm_resp/s (an ESME_ROK answer means the message is committed) with
//! latency percentiles and the statuses seen. `--idle-binds` opens that many more binds
//! that only stay bound, for measuring the server's memory per bind (it waits for Enter
//! or `--hold` seconds before unbinding).
//!
//! The PDUs are written by hand (submit_sm is a handful of fields) and responses read by
//! their header, so the generator costs little CPU next to the server it measures.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

const BIND_TRANSMITTER: u32 = 0x0000_0002;
const SUBMIT_SM: u32 = 0x0000_0004;
const SUBMIT_SM_RESP: u32 = 0x8000_0004;
const UNBIND: u32 = 0x0000_0006;
const ENQUIRE_LINK: u32 = 0x0000_0015;
const ENQUIRE_LINK_RESP: u32 = 0x8000_0015;

/// SMPP submit_sm load generator.
#[derive(Debug, Parser)]
#[command(name = "smpp-load", version)]
struct Cli {
    /// The SMPP server (host:port).
    #[arg(long, default_value = "127.0.0.1:2775")]
    addr: String,
    /// The account's system_id.
    #[arg(long, default_value = "carrier1")]
    system_id: String,
    /// Its password.
    #[arg(long, default_value = "s3cret")]
    password: String,
    /// Transmitter binds sending at once.
    #[arg(long, default_value_t = 1)]
    binds: usize,
    /// Outstanding submit_sm per bind.
    #[arg(long, default_value_t = 100)]
    window: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Destination numbers are this prefix plus a counter (international, TON 1).
    #[arg(long, default_value = "4915")]
    dest_prefix: String,
    /// The text of every message (GSM 7-bit).
    #[arg(long, default_value = "Benchmark message from smpp-load")]
    text: String,
    /// Ask for a delivery receipt (registered_delivery 1).
    #[arg(long)]
    receipts: bool,
    /// Only open this many binds and keep them bound (no submits), for memory per bind.
    #[arg(long, default_value_t = 0)]
    idle_binds: usize,
    /// With --idle-binds: seconds to stay bound.
    #[arg(long, default_value_t = 30.0)]
    hold: f64,
}

fn c_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

fn pdu(command_id: u32, sequence: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&(16 + body.len() as u32).to_be_bytes());
    out.extend_from_slice(&command_id.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn bind_transmitter(sequence: u32, system_id: &str, password: &str) -> Vec<u8> {
    let mut body = Vec::new();
    c_string(&mut body, system_id);
    c_string(&mut body, password);
    c_string(&mut body, "");
    body.extend_from_slice(&[0x34, 0, 0]);
    c_string(&mut body, "");
    pdu(BIND_TRANSMITTER, sequence, &body)
}

fn submit_sm(sequence: u32, dest: &str, text: &str, receipts: bool) -> Vec<u8> {
    let mut body = Vec::with_capacity(64 + text.len());
    c_string(&mut body, ""); // service_type
    body.extend_from_slice(&[1, 1]);
    c_string(&mut body, "15550100");
    body.extend_from_slice(&[1, 1]);
    c_string(&mut body, dest);
    body.extend_from_slice(&[0, 0, 0]); // esm_class, protocol_id, priority_flag
    c_string(&mut body, ""); // schedule_delivery_time
    c_string(&mut body, ""); // validity_period
    body.extend_from_slice(&[u8::from(receipts), 0, 0, 0]); // rd, replace, dcs, default id
    body.push(text.len().min(254) as u8);
    body.extend_from_slice(&text.as_bytes()[..text.len().min(254)]);
    pdu(SUBMIT_SM, sequence, &body)
}

/// Reads one PDU: (command_id, status, sequence).
async fn read_pdu(stream: &mut (impl AsyncReadExt + Unpin)) -> anyhow::Result<(u32, u32, u32)> {
    let mut header = [0u8; 16];
    stream.read_exact(&mut header).await?;
    let word =
        |i: usize| u32::from_be_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let length = word(0) as usize;
    if !(16..=65_536).contains(&length) {
        bail!("command_length {length}");
    }
    let mut body = vec![0u8; length - 16];
    stream.read_exact(&mut body).await?;
    Ok((word(4), word(8), word(12)))
}

async fn bind(cli: &Cli) -> anyhow::Result<TcpStream> {
    let mut stream = TcpStream::connect(&cli.addr)
        .await
        .with_context(|| format!("connect {}", cli.addr))?;
    stream.set_nodelay(true)?;
    stream
        .write_all(&bind_transmitter(1, &cli.system_id, &cli.password))
        .await?;
    let (_, status, _) = read_pdu(&mut stream).await?;
    if status != 0 {
        bail!("bind_transmitter refused: command_status {status:#010x}");
    }
    Ok(stream)
}

#[derive(Default)]
struct Totals {
    answered: u64,
    statuses: BTreeMap<u32, u64>,
}

struct Shared {
    histogram: Mutex<Histogram<u64>>,
    totals: Mutex<Totals>,
    measuring: std::sync::atomic::AtomicBool,
    stop: std::sync::atomic::AtomicBool,
}

async fn run_bind(cli: Arc<Cli>, index: usize, shared: Arc<Shared>) -> anyhow::Result<()> {
    use std::sync::atomic::Ordering::Relaxed;
    let stream = bind(&cli).await?;
    let (mut reader, writer) = stream.into_split();
    let window = Arc::new(Semaphore::new(cli.window));
    let sent: Arc<Mutex<HashMap<u32, Instant>>> = Arc::default();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(cli.window * 2);
    let writer_task = tokio::spawn(async move {
        let mut writer = BufWriter::new(writer);
        while let Some(bytes) = rx.recv().await {
            writer.write_all(&bytes).await?;
            while let Ok(more) = rx.try_recv() {
                writer.write_all(&more).await?;
            }
            writer.flush().await?;
        }
        anyhow::Ok(())
    });
    let reader_task = {
        let (window, sent, shared, tx) = (window.clone(), sent.clone(), shared.clone(), tx.clone());
        tokio::spawn(async move {
            loop {
                let (id, status, sequence) = match read_pdu(&mut reader).await {
                    Ok(pdu) => pdu,
                    Err(_) => return,
                };
                match id {
                    SUBMIT_SM_RESP => {
                        let started = sent.lock().ok().and_then(|mut s| s.remove(&sequence));
                        if let Some(started) = started {
                            if shared.measuring.load(Relaxed) {
                                let us = started.elapsed().as_micros() as u64;
                                if let Ok(mut h) = shared.histogram.lock() {
                                    let _ = h.record(us.max(1));
                                }
                                if let Ok(mut t) = shared.totals.lock() {
                                    t.answered += 1;
                                    *t.statuses.entry(status).or_default() += 1;
                                }
                            }
                            window.add_permits(1);
                        }
                    }
                    ENQUIRE_LINK => {
                        let resp = pdu(ENQUIRE_LINK_RESP, sequence, &[]);
                        let _ = tx.send(resp).await;
                    }
                    _ => {}
                }
            }
        })
    };
    let mut sequence: u32 = 1;
    let mut counter: u64 = 0;
    while !shared.stop.load(Relaxed) {
        let permit = window.acquire().await?;
        permit.forget();
        sequence = sequence.wrapping_add(1).max(2) & 0x7fff_ffff;
        counter += 1;
        let dest = format!(
            "{}{:02}{:08}",
            cli.dest_prefix,
            index % 100,
            counter % 100_000_000
        );
        let bytes = submit_sm(sequence, &dest, &cli.text, cli.receipts);
        if let Ok(mut s) = sent.lock() {
            s.insert(sequence, Instant::now());
        }
        if tx.send(bytes).await.is_err() {
            break;
        }
    }
    // Let the outstanding answers come back, then unbind.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sent.lock().map(|s| !s.is_empty()).unwrap_or(false) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = tx.send(pdu(UNBIND, 1, &[])).await;
    drop(tx);
    let _ = writer_task.await;
    reader_task.abort();
    Ok(())
}

fn rss_hint() -> String {
    "read the server's VmRSS from /proc/<pid>/status now".to_owned()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    use std::sync::atomic::Ordering::Relaxed;
    let cli = Arc::new(Cli::parse());
    if cli.idle_binds > 0 {
        let mut streams = Vec::with_capacity(cli.idle_binds);
        for _ in 0..cli.idle_binds {
            streams.push(bind(&cli).await?);
        }
        println!("{} binds open; {}", streams.len(), rss_hint());
        tokio::time::sleep(Duration::from_secs_f64(cli.hold)).await;
        for mut s in streams {
            let _ = s.write_all(&pdu(UNBIND, 2, &[])).await;
        }
        return Ok(());
    }
    let shared = Arc::new(Shared {
        histogram: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        totals: Mutex::new(Totals::default()),
        measuring: false.into(),
        stop: false.into(),
    });
    let tasks: Vec<_> = (0..cli.binds)
        .map(|i| tokio::spawn(run_bind(cli.clone(), i, shared.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(cli.warmup)).await;
    shared.measuring.store(true, Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(cli.duration)).await;
    shared.measuring.store(false, Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    shared.stop.store(true, Relaxed);
    for task in tasks {
        task.await??;
    }
    let totals = shared.totals.lock().map_err(|_| anyhow::anyhow!("lock"))?;
    let h = shared
        .histogram
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?;
    let ok = totals.statuses.get(&0).copied().unwrap_or(0);
    println!(
        "smpp-load: {} binds x window {}, {:.1} s measured",
        cli.binds, cli.window, elapsed
    );
    println!(
        "submit_sm_resp/s: {:.0} (ESME_ROK/s: {:.0})",
        totals.answered as f64 / elapsed,
        ok as f64 / elapsed
    );
    println!(
        "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        h.value_at_quantile(0.50) as f64 / 1000.0,
        h.value_at_quantile(0.90) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.value_at_quantile(0.999) as f64 / 1000.0,
        h.max() as f64 / 1000.0
    );
    let statuses: Vec<String> = totals
        .statuses
        .iter()
        .map(|(s, n)| format!("{s:#010x}: {n}"))
        .collect();
    println!("command_status: {}", statuses.join(", "));
    Ok(())
}
