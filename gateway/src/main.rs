//! `switchboard`: the gateway and its operator commands.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchboard::config::{self, Config, LogFormat};
use tokio::net::TcpListener;

/// mimalloc instead of the system allocator: under load the store writer and the
/// request threads free and allocate many short buffers, and glibc's malloc took about
/// a sixth of the gateway's processor time (chunk consolidation and unlinking).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "A converged messaging gateway: SMS (SMPP), SIP MESSAGE, XMPP and email behind one REST API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (on the embedded default when no config file is given).
    Serve {
        /// The TOML config file.
        #[arg(long, short, env = "SWITCHBOARD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Work with config files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print the OpenAPI document of the REST API.
    Openapi,
    /// Work with API keys.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a config file (with the environment overrides) and report every problem.
    Check {
        /// The TOML config file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum ApikeyCommand {
    /// Make a new API key and print it with its SHA-256 (for `api_key_sha256`).
    New,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => run_serve(config),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => match config::load(Some(&file), std::env::vars()) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{}: {} problem(s)", file.display(), errors.0.len());
                for error in &errors.0 {
                    eprintln!("  {error}");
                }
                ExitCode::from(2)
            }
        },
        Command::Openapi => {
            print!("{}", switchboard::api::openapi_json());
            ExitCode::SUCCESS
        }
        Command::Apikey {
            command: ApikeyCommand::New,
        } => {
            let key = switchboard::new_api_key();
            println!("api key:        {key}");
            println!(
                "api_key_sha256: {}",
                hex::encode(switchboard::tenants::hash_key(&key))
            );
            ExitCode::SUCCESS
        }
    }
}

fn run_serve(path: Option<PathBuf>) -> ExitCode {
    let config = match config::load(path.as_deref(), std::env::vars()) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("the configuration has {} problem(s):", errors.0.len());
            for error in &errors.0 {
                eprintln!("  {error}");
            }
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config, path.is_none())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "the gateway stopped");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHBOARD_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(config: Config, embedded_default: bool) -> anyhow::Result<()> {
    let listen = config.http.listen;
    let state = switchboard::build_state(config).await?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr().unwrap_or(listen);
    tracing::info!(
        http = %local,
        database = state.store.backend(),
        "switchboard is listening"
    );
    for service in state.services.iter() {
        for url in service.listening() {
            println!("switchboard: {} listening on {url}", service.name());
        }
    }
    println!("switchboard: REST API listening on http://{local}");
    if embedded_default || state.config.tenants.is_empty() {
        let dir = config::data_dir(&state.config);
        let key_file = dir.join(switchboard::DEFAULT_KEY_FILE);
        println!("Switchboard is running on its embedded default.");
        println!("  REST API:  http://{local}  (docs at http://{local}/docs)");
        println!(
            "  Database:  {}",
            switchboard::redact(&state.config.database.url)
        );
        if state.config.tenants.is_empty() {
            println!(
                "  No tenants are configured: the tenant \"{}\" has the API key in {}",
                switchboard::tenants::DEFAULT_TENANT,
                key_file.display()
            );
            println!("  Send a message:");
            println!(
                "    curl -s http://{local}/v1/messages -H \"Authorization: Bearer $(cat {})\" \\",
                key_file.display()
            );
            println!(
                "      -H 'Content-Type: application/json' -d '{{\"to\": \"+14155550100\", \"text\": \"Hello from Switchboard\"}}'"
            );
        }
    }
    switchboard::serve(state, listener, shutdown_signal()).await?;
    tracing::info!("switchboard stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGTERM");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutting down");
}
