//! `xmpp-load`: an XMPP user for load runs against the gateway's component, compiled
//! so that the client is not what limits the figure.
//!
//! It logs in to an XMPP server over plain c2s (SASL PLAIN, for a loopback server that
//! allows it), binds a resource, sends its presence, prints `{"event":"ready"}` and then:
//!
//! - `receive`: counts the messages with a body that reach it, and prints
//!   `{"event":"got","count":N,"seconds":S}` (from the first to the last) once N have;
//! - `send`: sends N chat messages with XEP-0184 receipt requests, keeping `--window`
//!   without an answer, and prints `{"event":"flooded",...}` with the receipts and
//!   errors counted and the seconds from the first send to the last answer.
//!
//! Events are one JSON object per line, as `tests/peers/xmpp/user.py` prints them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::{Parser, Subcommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::Notify;

/// An XMPP user that floods or counts, for benchmarks.
#[derive(Debug, Parser)]
#[command(name = "xmpp-load", version)]
struct Cli {
    /// The server's c2s address (host:port).
    #[arg(long, default_value = "127.0.0.1:5222")]
    server: String,
    /// The user's bare JID.
    #[arg(long)]
    jid: String,
    /// The user's password.
    #[arg(long)]
    password: String,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Count messages that arrive.
    Receive {
        /// How many to wait for.
        #[arg(long)]
        count: u64,
    },
    /// Send messages with receipt requests and count the answers.
    Send {
        /// Where to (a JID of the component, e.g. +15550100@sms.localhost).
        #[arg(long)]
        to: String,
        /// How many.
        #[arg(long)]
        count: u64,
        /// Messages sent without an answer yet, at most.
        #[arg(long, default_value_t = 256)]
        window: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (user, domain) = cli
        .jid
        .split_once('@')
        .context("--jid must be user@domain")?;
    let stream = TcpStream::connect(&cli.server)
        .await
        .with_context(|| format!("cannot connect to {}", cli.server))?;
    stream.set_nodelay(true)?;
    let (mut reader, writer) = stream.into_split();
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    let mut pending = Vec::new();
    login(
        &mut reader,
        &mut writer,
        &mut pending,
        domain,
        user,
        &cli.password,
    )
    .await?;
    println!("{{\"event\":\"ready\"}}");
    match cli.mode {
        Mode::Receive { count } => {
            let mut counter = Counter::new(b"<body");
            counter.feed(&pending);
            let mut first = (counter.seen > 0).then(Instant::now);
            let mut buf = vec![0u8; 64 * 1024];
            while counter.seen < count {
                let n = reader.read(&mut buf).await?;
                if n == 0 {
                    bail!(
                        "the server closed the stream after {} messages",
                        counter.seen
                    );
                }
                counter.feed(&buf[..n]);
                if counter.seen > 0 {
                    first.get_or_insert_with(Instant::now);
                }
            }
            let seconds = first.map(|t| t.elapsed().as_secs_f64()).unwrap_or_default();
            println!("{{\"event\":\"got\",\"count\":{count},\"seconds\":{seconds:.6}}}");
        }
        Mode::Send { to, count, window } => {
            let answered = Arc::new(AtomicU64::new(0));
            let progress = Arc::new(Notify::new());
            let start = Instant::now();
            let counting = tokio::spawn(count_answers(
                reader,
                pending,
                count,
                answered.clone(),
                progress.clone(),
            ));
            let mut sent = 0u64;
            while sent < count {
                let notified = progress.notified();
                let room = (answered.load(Relaxed) + window).saturating_sub(sent);
                if room == 0 {
                    notified.await;
                    continue;
                }
                let until = (sent + room).min(count);
                for i in sent..until {
                    let stanza = format!(
                        "<message to='{to}' type='chat' id='in-{i}'><body>in {i}</body>\
                         <request xmlns='urn:xmpp:receipts'/></message>"
                    );
                    writer.write_all(stanza.as_bytes()).await?;
                }
                sent = until;
                writer.flush().await?;
            }
            let (receipts, errors) = counting.await??;
            let seconds = start.elapsed().as_secs_f64();
            println!(
                "{{\"event\":\"flooded\",\"count\":{count},\"receipts\":{receipts},\
                 \"errors\":{errors},\"seconds\":{seconds:.6}}}"
            );
        }
    }
    writer.write_all(b"</stream:stream>").await?;
    writer.flush().await?;
    Ok(())
}

/// Counts receipts and error answers until `count` messages have one.
async fn count_answers(
    mut reader: OwnedReadHalf,
    pending: Vec<u8>,
    count: u64,
    answered: Arc<AtomicU64>,
    progress: Arc<Notify>,
) -> anyhow::Result<(u64, u64)> {
    let mut receipts = Counter::new(b"<received");
    let mut errors = Counter::new(b"type='error'");
    let mut errors_dq = Counter::new(b"type=\"error\"");
    let mut buf = pending;
    buf.reserve(64 * 1024);
    loop {
        receipts.feed(&buf);
        errors.feed(&buf);
        errors_dq.feed(&buf);
        let done = receipts.seen + errors.seen + errors_dq.seen;
        answered.store(done, Relaxed);
        progress.notify_one();
        if done >= count {
            return Ok((receipts.seen, errors.seen + errors_dq.seen));
        }
        buf.resize(64 * 1024, 0);
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            bail!("the server closed the stream after {done} answers");
        }
        buf.truncate(n);
    }
}

/// Logs in: stream, SASL PLAIN, stream restart, resource binding, presence. Bytes read
/// past the last answer are left in `pending`.
async fn login(
    reader: &mut OwnedReadHalf,
    writer: &mut BufWriter<tokio::net::tcp::OwnedWriteHalf>,
    pending: &mut Vec<u8>,
    domain: &str,
    user: &str,
    password: &str,
) -> anyhow::Result<()> {
    let header = format!(
        "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' \
         xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    );
    send(writer, &header).await?;
    read_past(reader, pending, b"</stream:features>").await?;
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
    send(
        writer,
        &format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{credentials}</auth>"
        ),
    )
    .await?;
    let answer = read_past(reader, pending, b"/>").await?;
    if !answer.windows(8).any(|w| w == b"<success") {
        bail!("login refused: {}", String::from_utf8_lossy(&answer).trim());
    }
    send(writer, &header).await?;
    read_past(reader, pending, b"</stream:features>").await?;
    send(
        writer,
        "<iq type='set' id='bind-1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
         <resource>load</resource></bind></iq>",
    )
    .await?;
    read_past(reader, pending, b"</iq>").await?;
    send(writer, "<presence/>").await?;
    Ok(())
}

async fn send(
    writer: &mut BufWriter<tokio::net::tcp::OwnedWriteHalf>,
    text: &str,
) -> anyhow::Result<()> {
    writer.write_all(text.as_bytes()).await?;
    writer.flush().await?;
    Ok(())
}

/// Reads until `marker` has arrived; returns what came up to and including it and
/// keeps the rest in `pending`.
async fn read_past(
    reader: &mut OwnedReadHalf,
    pending: &mut Vec<u8>,
    marker: &[u8],
) -> anyhow::Result<Vec<u8>> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(at) = pending.windows(marker.len()).position(|w| w == marker) {
            let rest = pending.split_off(at + marker.len());
            return Ok(std::mem::replace(pending, rest));
        }
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            bail!(
                "the server closed the stream during login: {}",
                String::from_utf8_lossy(pending)
            );
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

/// Counts the occurrences of a byte string in a stream fed in pieces.
struct Counter {
    needle: &'static [u8],
    /// The end of the previous piece, shorter than the needle.
    tail: Vec<u8>,
    seen: u64,
}

impl Counter {
    fn new(needle: &'static [u8]) -> Counter {
        Counter {
            needle,
            tail: Vec::new(),
            seen: 0,
        }
    }

    fn feed(&mut self, piece: &[u8]) {
        let mut joined = std::mem::take(&mut self.tail);
        joined.extend_from_slice(piece);
        let n = self.needle.len();
        let mut i = 0;
        while i + n <= joined.len() {
            if &joined[i..i + n] == self.needle {
                self.seen += 1;
                i += n;
            } else {
                i += 1;
            }
        }
        let keep = (n - 1).min(joined.len() - i.min(joined.len()));
        self.tail = joined[joined.len() - keep..].to_vec();
    }
}

#[cfg(test)]
mod tests {
    use super::Counter;

    #[test]
    fn counts_across_pieces() {
        let mut c = Counter::new(b"<body");
        c.feed(b"<message><bo");
        c.feed(b"dy>a</body></message><body>");
        c.feed(b"<bod");
        assert_eq!(c.seen, 2);
        c.feed(b"y");
        assert_eq!(c.seen, 3);
    }
}
