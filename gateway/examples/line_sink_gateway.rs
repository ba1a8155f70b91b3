//! A gateway with one extra connector for tests of dispatch across process crashes:
//! `sink`, an SMS connector that writes `<message id> <to>` lines to a TCP peer
//! (`SINK_ADDR`) and takes `OK <upstream id>` as the answer. It is a test harness, not a
//! channel: it is built with the tests and never installed.
//!
//! Usage: `line_sink_gateway CONFIG` with `SINK_ADDR=127.0.0.1:PORT`.

use std::sync::Arc;

use switchboard_adapter::{Adapter, BoxFuture, SendOutcome};
use switchboard_model::{Channel, Message};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

struct LineSink {
    addr: String,
    conn: Mutex<Option<BufReader<TcpStream>>>,
}

impl LineSink {
    async fn exchange(&self, line: String) -> std::io::Result<String> {
        let mut conn = self.conn.lock().await;
        if conn.is_none() {
            *conn = Some(BufReader::new(TcpStream::connect(&self.addr).await?));
        }
        let Some(stream) = conn.as_mut() else {
            return Err(std::io::Error::other("no connection"));
        };
        let result = async {
            stream.get_mut().write_all(line.as_bytes()).await?;
            let mut answer = String::new();
            if stream.read_line(&mut answer).await? == 0 {
                return Err(std::io::Error::other("the sink closed the connection"));
            }
            Ok(answer)
        }
        .await;
        if result.is_err() {
            *conn = None;
        }
        result
    }
}

impl Adapter for LineSink {
    fn name(&self) -> &str {
        "sink"
    }

    fn channel(&self) -> Channel {
        Channel::Sms
    }

    fn concurrency(&self) -> usize {
        1
    }

    fn send<'a>(&'a self, message: &'a Message) -> BoxFuture<'a, SendOutcome> {
        Box::pin(async move {
            match self
                .exchange(format!("{} {}\n", message.id, message.to))
                .await
            {
                Ok(answer) => match answer.trim().strip_prefix("OK ") {
                    Some(upstream) => SendOutcome::sent(upstream),
                    None => SendOutcome::Permanent {
                        code: "refused".into(),
                        detail: answer.trim().to_owned(),
                    },
                },
                Err(e) => SendOutcome::Transient {
                    code: "io".into(),
                    detail: e.to_string(),
                    retry_after: None,
                },
            }
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: line_sink_gateway CONFIG"))?;
    let addr = std::env::var("SINK_ADDR")?;
    let config = switchboard::config::load(Some(std::path::Path::new(&path)), std::env::vars())?;
    let sink: Arc<dyn Adapter> = Arc::new(LineSink {
        addr,
        conn: Mutex::new(None),
    });
    let listen = config.http.listen;
    let state = switchboard::build_state_with(config, vec![sink]).await?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!(
        "switchboard: REST API listening on http://{}",
        listener.local_addr()?
    );
    switchboard::serve(state, listener, std::future::pending()).await
}
