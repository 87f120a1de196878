//! The `im-server` command: parse the command line, load the configuration, run a subcommand.

use std::io::BufRead;

use anyhow::Context;
use clap::{Parser, Subcommand};
use im_server::app::{App, Startup, shutdown_signal};
use im_server::config::{Config, LogFormat};
use im_server::domain::{accounts, rbac, seed};
use im_server::store;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    version,
    about = "A Rust instant-messaging server, wire-compatible with the egg.js IM application"
)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Migrate, seed the built-in roles, and serve REST and Socket.IO.
    Serve {
        /// Add the original's demo data (user/123456 and friends) to an empty database.
        #[arg(long, env = "IM_DEMO")]
        demo: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Write start-up data and exit.
    Seed {
        /// Add the original's demo data to an empty database.
        #[arg(long)]
        demo: bool,
        /// Add benchmark users bench1..benchN (password 123456), their groups and friendships.
        #[arg(long, value_name = "N")]
        bench_users: Option<usize>,
        /// Members of each benchmark group `bench-group-K`.
        #[arg(long, value_name = "M", default_value_t = 10, requires = "bench_users")]
        group_size: usize,
    },
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a local user; the password is read from standard input unless given.
    Create {
        username: String,
        #[arg(long)]
        password: Option<String>,
        /// Role keyName: user, admin, mute or disabled.
        #[arg(long, default_value = "user")]
        role: String,
    },
    /// Set a user's password; it is read from standard input unless given.
    Passwd {
        username: String,
        #[arg(long)]
        password: Option<String>,
    },
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Connections the kernel holds for us before we accept them. tokio's default (1,024) fills
/// under a flood of connections, and then everyone's attempts are dropped; the kernel caps
/// this at `net.core.somaxconn` (4,096 by default).
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // A restart binds again while the last run's connections are in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

fn password_or_stdin(given: Option<String>) -> anyhow::Result<String> {
    if let Some(password) = given {
        return Ok(password);
    }
    eprintln!("password:");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.config.log_format);
    let config = cli.config;
    tracing::debug!(?config, "configuration");
    match cli.command {
        Command::Serve { demo } => {
            let listener =
                listen(config.bind).with_context(|| format!("binding {}", config.bind))?;
            let app = App::start(config, Startup { demo }).await?;
            app.serve(listener, shutdown_signal()).await
        }
        Command::Migrate => {
            let applied = store::migrate::run(&config.database_url).await?;
            println!("{applied} migration(s) applied");
            Ok(())
        }
        Command::Seed {
            demo,
            bench_users,
            group_size,
        } => {
            // Start-up writes the demo data (before the admin bootstrap, which would make the
            // database non-empty) and logs whether it did.
            let app = App::start(config, Startup { demo }).await?;
            let mut conn = app.db.get().await?;
            if let Some(users) = bench_users {
                let started = std::time::Instant::now();
                let spec = seed::BenchSpec { users, group_size };
                match seed::bench(&mut conn, spec).await? {
                    seed::BenchOutcome::Created {
                        users,
                        groups,
                        friendships,
                    } => println!(
                        "benchmark data: {users} users, {groups} groups, {friendships} friendships in {:.1} s",
                        started.elapsed().as_secs_f64()
                    ),
                    seed::BenchOutcome::SkippedExists => {
                        println!("bench1 exists: benchmark data was seeded before, nothing written")
                    }
                }
            }
            Ok(())
        }
        Command::User(command) => {
            let app = App::start(config, Startup::default()).await?;
            match command {
                UserCommand::Create {
                    username,
                    password,
                    role,
                } => {
                    let password = password_or_stdin(password)?;
                    let role_key = rbac::ROLES
                        .iter()
                        .map(|spec| spec.key)
                        .find(|key| *key == role)
                        .with_context(|| format!("unknown role {role:?}"))?;
                    let hash = accounts::hash_password(&password).await?;
                    let mut conn = app.db.get().await?;
                    let user =
                        accounts::create_local_user(&mut conn, &username, &hash, role_key, false)
                            .await?;
                    println!("created user {} (id {})", user.username, user.id);
                }
                UserCommand::Passwd { username, password } => {
                    let password = password_or_stdin(password)?;
                    accounts::set_password(&app, &username, &password).await?;
                    println!("password of {username} changed");
                }
            }
            Ok(())
        }
    }
}
