//! `batpak`: the command-line tool. Parses the command line, opens the store the way
//! the command needs, runs it, and turns failures into a message on stderr and a
//! non-zero exit code.

mod cli;
mod commands;
mod demo;
mod render;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use batpak::{Error, Store, StoreBuilder};

use batpak::proof::{SigningKey, VerifyingKey};
use clap::Parser;

use cli::{Cli, Command};

/// A failure to report: the message, and the exit code (1 by default; 0 for
/// [`Failure::stdout_closed`], which is reported as success without a message).
#[derive(Debug)]
pub struct Failure {
    message: String,
    code: u8,
    /// The stable error code `--json` reports: the library's (`Error::code`) or the
    /// tool's own (`"usage"` for a request it cannot carry out as given).
    kind: &'static str,
}

impl Failure {
    /// A failure with exit code 1.
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            code: 1,
            kind: "usage",
        }
    }
}

impl Failure {
    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Standard output was closed by its reader, as `batpak export | head -1` does:
    /// not a failure. The command stops, and the program exits 0 with no message.
    pub fn stdout_closed() -> Self {
        Failure {
            message: String::new(),
            code: 0,
            kind: "stdout_closed",
        }
    }

    /// A failed write to standard output: a closed pipe is
    /// [`Failure::stdout_closed`], any other error a failure.
    pub fn writing_stdout(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Failure::stdout_closed()
        } else {
            e.into()
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure {
            kind: e.code(),
            ..Failure::new(e.to_string())
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure {
            kind: "io",
            ..Failure::new(e.to_string())
        }
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        Failure {
            kind: "json",
            ..Failure::new(format!("JSON: {e}"))
        }
    }
}

pub type Outcome = Result<(), Failure>;

/// What every command needs: where the store is and how to open it.
#[derive(Debug)]
pub struct Context {
    pub dir: PathBuf,
    /// `--dir` (or `$BATPAK_DIR`) was given.
    pub dir_given: bool,
    pub json: bool,
    pub signing_key: Option<SigningKey>,
    trusted: Vec<VerifyingKey>,
    /// `--wait`: how long a writing open waits for a held lock.
    wait: std::time::Duration,
    /// `--format`.
    pub format: cli::OutputFormat,
}

impl Context {
    /// The public keys whose signatures to accept: `--trust-key`, and the signing
    /// key's own half.
    pub fn trusted_keys(&self) -> Vec<VerifyingKey> {
        let mut keys = self.trusted.clone();
        keys.extend(self.signing_key.as_ref().map(SigningKey::verifying_key));
        keys
    }

    fn builder(&self, dir: &Path) -> StoreBuilder {
        let mut b = Store::builder(dir).allow_kind_collisions(true);
        b = b.lock_wait(self.wait);
        if let Some(k) = &self.signing_key {
            b = b.signing_key(k.clone());
        }
        for k in &self.trusted {
            b = b.trust_key(*k);
        }
        b
    }

    /// Opens for reading: read-only, or as a lock-free view while another process
    /// writes. A directory with no store is an error naming it.
    pub fn open_read(&self) -> Result<Store, Failure> {
        self.require_store()?;
        // A reader never waits: a store a writer holds is read through a view.
        let reader = self.builder(&self.dir).lock_wait(std::time::Duration::ZERO);
        let store = match reader.open_read_only() {
            Err(Error::Locked { .. }) => self.builder(&self.dir).open_view()?,
            other => other.map_err(|e| self.open_failure(e))?,
        };
        warn_tail(&store, "ignored by this read-only open");
        Ok(store)
    }

    /// A fresh lock-free view (for `tail -f`, which must not block writers).
    pub fn open_view(&self) -> Result<Store, Failure> {
        self.require_store()?;
        let store = self
            .builder(&self.dir)
            .open_view()
            .map_err(|e| self.open_failure(e))?;
        warn_tail(&store, "ignored by this read-only open");
        Ok(store)
    }

    /// Opens for writing, creating the store when `create` and it does not exist.
    pub fn open_write(&self, create: bool) -> Result<Store, Failure> {
        if !create {
            self.require_store()?;
        }
        let store = self
            .builder(&self.dir)
            .open()
            .map_err(|e| self.open_failure(e))?;
        warn_tail(&store, "cut by this open");
        Ok(store)
    }

    pub fn require_store(&self) -> Outcome {
        if self.dir.join("segments").is_dir() {
            Ok(())
        } else {
            Err(Failure {
                kind: "no_store",
                ..Failure::new(format!(
                    "no batpak store at {} (set --dir or BATPAK_DIR; `batpak demo` makes one)",
                    self.dir.display()
                ))
            })
        }
    }

    fn open_failure(&self, e: Error) -> Failure {
        let hint = match &e {
            Error::Corrupt { path, offset, .. } if path.extension().is_some_and(|x| x == "seg") => {
                format!(
                    "\n(to cut the history there, keeping what is cut and recording the repair: batpak repair --cut {}:{offset} --reason TEXT; take a copy of the directory first)",
                    path.display()
                )
            }
            _ => String::new(),
        };
        Failure {
            kind: e.code(),
            ..Failure::new(format!(
                "cannot open the store at {}: {e}{hint}",
                self.dir.display()
            ))
        }
    }
}

/// Every tail an open cut (or, read-only, ignored) is said on stderr, whatever the
/// command: bytes that were never acknowledged durable, but bytes all the same.
fn warn_tail(store: &Store, done: &str) {
    if let Some(cut) = &store.open_report().tail_cut {
        let _ = writeln!(
            std::io::stderr(),
            "warning: torn tail {done}: {} bytes at offset {} of {} ({} complete records of an unfinished batch): {}",
            cut.bytes,
            cut.offset,
            cut.path.display(),
            cut.records,
            cut.reason
        );
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.format == cli::OutputFormat::Csv {
        render::use_csv();
    }
    let env_dir = std::env::var_os("BATPAK_DIR").map(PathBuf::from);
    let dir_given = cli.dir.is_some() || env_dir.is_some();
    let dir = cli
        .dir
        .or(env_dir)
        .unwrap_or_else(|| PathBuf::from("./batpak-data"));
    let ctx = Context {
        dir,
        dir_given,
        json: cli.json || cli.format == cli::OutputFormat::Json,
        format: cli.format,
        signing_key: cli.signing_key,
        trusted: cli.trust_keys,
        wait: cli.wait.unwrap_or_default(),
    };
    let result = run(&ctx, cli.command);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) if f.code == 0 => ExitCode::SUCCESS,
        Err(f) if ctx.json => {
            let body = serde_json::json!({ "error": { "code": f.kind, "message": f.message } });
            let _ = writeln!(std::io::stderr(), "{body}");
            ExitCode::from(f.code)
        }
        Err(f) => {
            let _ = writeln!(std::io::stderr(), "error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn run(ctx: &Context, command: Command) -> Outcome {
    use cli::OutputFormat;
    use commands::{proof, read, replicate, serve, transfer, write};
    if matches!(
        ctx.format,
        OutputFormat::Text | OutputFormat::Dot | OutputFormat::Mermaid
    ) && !matches!(command, Command::Graph { .. })
    {
        return Err(Failure::new(format!(
            "--format {} is a form of `graph`; lists take table, csv or json",
            format!("{:?}", ctx.format).to_lowercase()
        )));
    }
    match command {
        Command::Demo => demo::run(ctx),
        Command::Get { id, seq } => read::get(ctx, id, seq),
        Command::Stream { entity } => read::stream(ctx, &entity),
        Command::Query {
            filters,
            reverse,
            before,
        } => read::query(ctx, &filters, reverse.then_some(before.unwrap_or(u64::MAX))),
        Command::Entities {
            prefix,
            after,
            limit,
        } => read::entities(ctx, prefix.as_deref(), after.as_deref(), limit),
        Command::Scopes => read::scopes(ctx),
        Command::Kinds => read::kinds(ctx),
        Command::Count(filters) => read::count(ctx, &filters),
        Command::Tail { filters, follow } => read::tail(ctx, &filters, follow),
        Command::Walk { id, limit } => read::walk(ctx, id, limit),
        Command::Causes { id, limit } => read::causes(ctx, id, limit),
        Command::Effects { id } => read::effects(ctx, id),
        Command::Correlated { id } => read::correlated(ctx, id),
        Command::Graph { id, depth } => read::graph(ctx, id, depth),
        Command::Stats { sinks, name } => read::stats(ctx, &sinks, &name),
        Command::Keygen { file } => proof::keygen(ctx, &file),
        Command::Pubkey { file } => proof::pubkey(ctx, file.as_deref()),
        Command::Append(args) => write::append(ctx, args),
        Command::Import(args) => transfer::import(ctx, &args),
        Command::Verify { filters, offline } => proof::verify(ctx, &filters, offline),
        Command::VerifyReceipt { receipt } => proof::verify_receipt(ctx, receipt),
        Command::Anchor => proof::anchor(ctx),
        Command::VerifyAnchor { anchor } => proof::verify_anchor(ctx, anchor),
        Command::Export { filters, output } => transfer::export(ctx, &filters, output.as_deref()),
        Command::Snapshot { dest } => transfer::snapshot(ctx, &dest),
        Command::Salvage { dest } => transfer::salvage(ctx, &dest),
        Command::Fork { dest, at } => transfer::fork(ctx, &dest, at),
        Command::Redact { id, reason } => write::redact(ctx, id, &reason),
        Command::Retention { action } => write::retention(ctx, action),
        Command::Delete { entity, hard } => write::delete(ctx, &entity, hard),
        Command::Compact => write::compact(ctx),
        Command::Repair {
            cut,
            reason,
            reindex: _,
        } => write::repair(ctx, cut, reason.as_deref()),
        Command::Serve(args) => serve::serve(ctx, args),
        Command::Token { action } => serve::token(ctx, action),
        Command::Replicate(args) => replicate::replicate(ctx, args),
        Command::VerifyReplica {
            url,
            schema,
            anchors,
        } => replicate::verify_replica(ctx, &url, &schema, &anchors),
        Command::Promote {
            from,
            schema,
            force,
        } => replicate::promote(ctx, &from, &schema, force),
        Command::Follow {
            from,
            schema,
            until_caught_up,
        } => replicate::follow(ctx, &from, &schema, until_caught_up),
    }
}
