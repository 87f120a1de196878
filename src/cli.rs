//! The `im-server` command line: its subcommands and their options, how each runs, and how its
//! errors read (in English, one line, no backtrace unless `RUST_BACKTRACE` asks for one).

use std::ffi::OsString;
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use clap::error::{ContextKind, ErrorKind};
use clap::{ArgAction, ArgGroup, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::app::{App, Database, Startup, for_operator, shutdown_signal};
use crate::config::{Config, DEFAULT_DATABASE_URL, LogFormat};
use crate::domain::{accounts, import, rbac, seed};
use crate::logging::{self, Redacting};

#[derive(Parser)]
#[command(
    name = "im-server",
    version = crate::telemetry::VERSION,
    about = "A Rust instant-messaging server, wire-compatible with the egg.js IM application",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Migrate, write the start-up data (built-in roles, a first admin, demo data if asked),
    /// then serve REST and Socket.IO.
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Write demo or benchmark data and exit.
    Seed(SeedArgs),
    /// Manage local accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Move the original's MySQL/MariaDB database (users, friends, groups, applies,
    /// conversations, messages, roles) into a new database of ours, ids kept, all or nothing.
    Import(ImportArgs),
}

#[derive(Args)]
struct ImportArgs {
    /// The original's database, `mysql://user:password@host:3306/database` (MariaDB too). In
    /// IM_IMPORT_FROM it stays out of the process list.
    #[arg(
        long,
        env = "IM_IMPORT_FROM",
        hide_env_values = true,
        value_name = "URL"
    )]
    from: String,
    /// The original's time zone (its `config.sequelize.timezone`): it stored times as wall-clock
    /// times there.
    #[arg(long, value_name = "OFFSET", default_value = "+08:00",
          value_parser = crate::time::parse_offset)]
    source_timezone: chrono::FixedOffset,
    /// Read and check everything and print the report, then roll back: nothing is imported.
    #[arg(long)]
    dry_run: bool,
    /// Rows per page read from the original and per batch written.
    #[arg(long, value_name = "ROWS", default_value_t = import::BATCH)]
    batch: usize,
    #[command(flatten)]
    database: DatabaseArgs,
}

#[derive(Args)]
struct ServeArgs {
    /// Add the demo data (user/123456, admin/123456, friends and groups) when the database has
    /// no users; a database with users is never touched.
    #[arg(long, env = "IM_DEMO", value_name = "BOOL",
          action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = crate::config::boolean)]
    demo: bool,
    #[command(flatten)]
    config: Config,
}

/// What the commands other than `serve` need: where the database is.
#[derive(Args)]
struct DatabaseArgs {
    /// `sqlite://path/to/file.db` (created if missing) or `postgres://user:password@host/db`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, default_value = DEFAULT_DATABASE_URL)]
    database_url: String,
}

#[derive(Args)]
#[command(group(ArgGroup::new("data").required(true).multiple(true).args(["demo", "bench_users"])))]
struct SeedArgs {
    /// Add the demo data (user/123456, admin/123456, friends and groups) to a database that has
    /// no users.
    #[arg(long)]
    demo: bool,
    /// Add benchmark users bench1..benchN (password 123456), their groups and friendships.
    #[arg(long, value_name = "N")]
    bench_users: Option<usize>,
    /// Members of each benchmark group `bench-group-K`.
    #[arg(long, value_name = "M", default_value_t = 10, requires = "bench_users")]
    group_size: usize,
    #[command(flatten)]
    database: DatabaseArgs,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a local user, under the same rules as sign-up.
    Create {
        /// The new user's name, as sign-up takes it: 4 to 64 characters once normalised (NFKC,
        /// trimmed), no invisible or bidi characters, one alphabet of Latin, Greek and Cyrillic,
        /// not taken in any case.
        username: String,
        /// The password, 6 to 128 characters. Absent: read from the first line of standard input,
        /// which keeps it out of the process list and the shell's history.
        #[arg(long)]
        password: Option<String>,
        /// The user's role.
        #[arg(long, default_value = "user", value_parser = role_keys(), ignore_case = true)]
        role: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Set a user's password.
    Passwd {
        /// Whose password to set.
        username: String,
        /// The new password, 6 to 128 characters. Absent: read from the first line of standard
        /// input, which keeps it out of the process list and the shell's history.
        #[arg(long)]
        password: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// Connections a command other than `serve` holds: on PostgreSQL, start-up's lock takes one while
/// the work takes another.
const CLI_POOL: usize = 2;

/// The built-in roles' keys, the values `--role` takes.
fn role_keys() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(rbac::ROLES.map(|spec| spec.key))
}

/// Runs the command line of this process and returns its exit status.
pub fn main() -> ExitCode {
    let cli = parse(std::env::args_os().collect());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => return fail(anyhow::Error::new(error).context("starting the runtime")),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(error),
    }
}

/// Parses `args`, or exits with clap's message; a value refused from an environment variable is
/// reported under the variable's name, which is what the operator set.
fn parse(args: Vec<OsString>) -> Cli {
    let mut command = Cli::command();
    let parsed = command
        .try_get_matches_from_mut(args.clone())
        .and_then(|mut matches| Cli::from_arg_matches_mut(&mut matches));
    match parsed {
        Ok(cli) => cli,
        Err(error) => name_the_variable(error, &command, &args).exit(),
    }
}

/// Rewrites clap's "invalid value for '--flag'" as "invalid value in VARIABLE" when the value
/// came from the flag's environment variable and not from the command line.
fn name_the_variable(
    error: clap::Error,
    command: &clap::Command,
    args: &[OsString],
) -> clap::Error {
    if !matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return error;
    }
    let (Some(invalid_arg), Some(value)) = (
        error.get(ContextKind::InvalidArg),
        error.get(ContextKind::InvalidValue),
    ) else {
        return error;
    };
    let Some(long) = invalid_arg
        .to_string()
        .split_whitespace()
        .next()
        .and_then(|flag| flag.strip_prefix("--"))
        .map(|long| long.split(['[', '=']).next().unwrap_or(long).to_owned())
    else {
        return error;
    };
    let value = value.to_string();
    let on_command_line = args.iter().any(|arg| {
        let arg = arg.to_string_lossy();
        arg == format!("--{long}") || arg.starts_with(&format!("--{long}="))
    });
    if on_command_line {
        return error;
    }
    let Some(variable) = env_of(command, &long)
        .filter(|variable| std::env::var(variable).is_ok_and(|set| set == value))
    else {
        return error;
    };
    let reason = match error.get(ContextKind::ValidValue) {
        Some(valid) => format!("expected one of {valid}"),
        None => std::error::Error::source(&error)
            .map(ToString::to_string)
            .unwrap_or_else(|| "not a valid value".to_owned()),
    };
    // Without the usage line: the command line was not at fault.
    clap::Error::raw(
        error.kind(),
        format!(
            "invalid value '{value}' in environment variable {variable} (the --{long} setting): {reason}\n"
        ),
    )
}

/// The environment variable of option `--long` in `command` or any of its subcommands.
fn env_of(command: &clap::Command, long: &str) -> Option<String> {
    command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))
        .and_then(|arg| arg.get_env())
        .map(|variable| variable.to_string_lossy().into_owned())
        .or_else(|| {
            command
                .get_subcommands()
                .find_map(|subcommand| env_of(subcommand, long))
        })
}

/// Prints a failure the way an operator reads it, and returns the failure status.
fn fail(error: anyhow::Error) -> ExitCode {
    if std::env::var_os("RUST_BACKTRACE").is_some_and(|value| value != "0") {
        eprintln!("error: {error:?}");
    } else {
        eprintln!("error: {error:#}");
    }
    ExitCode::FAILURE
}

/// Logs of `serve` go to standard output, in the configured format, coloured only on a terminal.
/// The other commands answer on standard output and log only warnings, to standard error. Either
/// way every line is redacted and the packet-level libraries stay quiet unless named
/// (`crate::logging`).
fn init_tracing(serve_format: Option<LogFormat>) -> anyhow::Result<()> {
    let spec = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => {
            EnvFilter::try_new(&directives).map_err(|error| {
                anyhow::anyhow!("RUST_LOG {directives:?} is not a log filter: {error}")
            })?;
            directives
        }
        _ if serve_format.is_some() => "info".to_owned(),
        _ => "warn".to_owned(),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(logging::filter(&spec));
    let human = |ansi: bool| Redacting(tracing_subscriber::fmt::format().with_ansi(ansi));
    match serve_format {
        Some(LogFormat::Human) => {
            let ansi = std::io::stdout().is_terminal();
            builder.with_ansi(ansi).event_format(human(ansi)).try_init()
        }
        Some(LogFormat::Json) => builder
            .event_format(Redacting(tracing_subscriber::fmt::format().json()))
            .try_init(),
        None => {
            let ansi = std::io::stderr().is_terminal();
            builder
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
                .event_format(human(ansi))
                .try_init()
        }
    }
    .map_err(|error| anyhow::anyhow!("starting the log: {error}"))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(serve) => {
            let ServeArgs { demo, config } = *serve;
            init_tracing(Some(config.log_format))?;
            tracing::debug!(?config, "configuration");
            let listener = crate::connections::listen(config.bind).map_err(|error| {
                anyhow::anyhow!("cannot listen on {} (IM_BIND): {error}", config.bind)
            })?;
            let app = App::start(config, Startup { demo }).await?;
            app.serve(listener, shutdown_signal()).await
        }
        Command::Migrate(database) => {
            init_tracing(None)?;
            let database = Database::open(&database.database_url, CLI_POOL, None).await?;
            println!("{} migration(s) applied", database.migrations_applied);
            Ok(())
        }
        Command::Seed(args) => {
            init_tracing(None)?;
            seed(args).await
        }
        Command::User(command) => {
            init_tracing(None)?;
            user(command).await
        }
        Command::Import(args) => {
            init_tracing(None)?;
            import_original(args).await
        }
    }
}

async fn import_original(args: ImportArgs) -> anyhow::Result<()> {
    if !args.from.starts_with("mysql://") {
        anyhow::bail!(
            "--from must be a mysql:// URL (MariaDB's too): mysql://user:password@host:3306/database"
        );
    }
    if args.batch == 0 {
        anyhow::bail!("--batch must be at least 1");
    }
    let from = crate::config::redact_url(&args.from);
    // The source first: a wrong or unreachable one leaves the target untouched.
    let source = import::open_source(&args.from).await?;
    let database = Database::open(&args.database.database_url, CLI_POOL, None).await?;
    let options = import::ImportOptions {
        source_offset: args.source_timezone,
        dry_run: args.dry_run,
        batch: args.batch,
    };
    let progress: std::sync::Arc<dyn import::Progress> = if std::io::stderr().is_terminal() {
        std::sync::Arc::new(crate::progress::Bar::default())
    } else {
        std::sync::Arc::new(crate::progress::Lines::default())
    };
    let report = import::run(&database.db, source, options, progress).await?;
    print!("{}", crate::progress::render_report(&from, &report));
    Ok(())
}

async fn seed(args: SeedArgs) -> anyhow::Result<()> {
    let database = Database::open(&args.database.database_url, CLI_POOL, None).await?;
    let mut conn = database.db.get().await?;
    if args.demo {
        match seed::demo(&mut conn).await.map_err(for_operator)? {
            seed::DemoOutcome::Created { users } => {
                println!("demo data: {users} users; log in as {}", seed::DEMO_LOGINS)
            }
            seed::DemoOutcome::SkippedNotEmpty => anyhow::bail!(
                "demo data not written: the database already has users, and demo data only goes \
                 into an empty one (use another DATABASE_URL for a demo)"
            ),
        }
    }
    if let Some(users) = args.bench_users {
        let started = std::time::Instant::now();
        let spec = seed::BenchSpec {
            users,
            group_size: args.group_size,
        };
        match seed::bench(&mut conn, spec).await.map_err(for_operator)? {
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

async fn user(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Create {
            username,
            password,
            role,
            database,
        } => {
            accounts::check_username(&username)?;
            let password = password_or_stdin(password)?;
            accounts::check_password(&password)?;
            let role_key = rbac::ROLES
                .iter()
                .map(|spec| spec.key)
                .find(|key| key.eq_ignore_ascii_case(&role))
                .ok_or_else(|| anyhow::anyhow!("unknown role {role:?}"))?;
            let database = Database::open(&database.database_url, CLI_POOL, None).await?;
            let mut conn = database.db.get().await?;
            let hash = accounts::hash_password(&password)
                .await
                .map_err(for_operator)?;
            let user = accounts::create_local_user(&mut conn, &username, &hash, role_key, false)
                .await
                .map_err(for_operator)?;
            println!(
                "created user {} (id {}, role {role_key})",
                user.username, user.id
            );
        }
        UserCommand::Passwd {
            username,
            password,
            database,
        } => {
            let password = password_or_stdin(password)?;
            accounts::check_password(&password)?;
            let database = Database::open(&database.database_url, CLI_POOL, None).await?;
            let mut conn = database.db.get().await?;
            accounts::set_password(&mut conn, &username, &password)
                .await
                .map_err(for_operator)?;
            println!("password of {username} changed");
        }
    }
    Ok(())
}

/// The password given, or the first line of standard input (prompted for on a terminal).
fn password_or_stdin(given: Option<String>) -> anyhow::Result<String> {
    if let Some(password) = given {
        return Ok(password);
    }
    if std::io::stdin().is_terminal() {
        eprint!("password: ");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|error| anyhow::anyhow!("reading the password from standard input: {error}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every option and argument of every subcommand says what it is for.
    #[test]
    fn every_option_is_described() {
        fn check(command: &clap::Command, path: &str) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(
                    arg.get_help()
                        .is_some_and(|help| !help.to_string().is_empty()),
                    "{path} {id} has no description"
                );
            }
            for subcommand in command.get_subcommands() {
                if subcommand.get_name() != "help" {
                    check(subcommand, &format!("{path} {}", subcommand.get_name()));
                }
            }
        }
        let mut command = Cli::command();
        command.build();
        check(&command, "im-server");
    }

    #[test]
    fn booleans_and_enums_parse_from_the_command_line() {
        for (args, demo) in [
            (&["im-server", "serve"][..], false),
            (&["im-server", "serve", "--demo"][..], true),
            (&["im-server", "serve", "--demo=no"][..], false),
            (
                &["im-server", "serve", "--demo=YES", "--bind", "127.0.0.1:1"][..],
                true,
            ),
        ] {
            let cli = Cli::try_parse_from(args).expect("parses");
            let Command::Serve(serve) = cli.command else {
                panic!("serve");
            };
            assert_eq!(serve.demo, demo, "{args:?}");
        }
        let cli =
            Cli::try_parse_from(["im-server", "serve", "--log-format", "JSON"]).expect("parses");
        let Command::Serve(serve) = cli.command else {
            panic!("serve");
        };
        assert_eq!(serve.config.log_format, LogFormat::Json);
        // `--demo false` would make `false` a stray argument: the value needs `=`.
        assert!(Cli::try_parse_from(["im-server", "serve", "--demo", "false"]).is_err());
    }
}
