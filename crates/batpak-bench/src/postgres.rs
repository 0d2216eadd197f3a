//! A PostgreSQL server (Debian's) for the benchmarks, started into a temporary
//! directory on a free loopback port (as the `postgres` user when run as root) and
//! stopped on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A PostgreSQL server in a temporary directory, stopped on drop.
#[derive(Debug)]
pub struct Postgres {
    data: PathBuf,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    bin: PathBuf,
}

fn postgres_bin() -> Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|e| {
            format!(
                "no PostgreSQL under {}: {e} (apt-get install postgresql)",
                root.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .ok_or_else(|| "no PostgreSQL server binary (apt-get install postgresql)".into())
}

/// Runs a PostgreSQL tool as the `postgres` user when we are root (it refuses root).
fn as_postgres(program: &Path) -> Command {
    let root = std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || std::env::var("HOME").map(|h| h == "/root").unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

pub fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Postgres {
    pub fn start(work: &Path) -> Result<Postgres> {
        let bin = postgres_bin()?;
        let data = work.join("pgdata");
        std::fs::create_dir_all(work)?;
        // The postgres user must own what it writes.
        let _ = Command::new("chown")
            .arg("-R")
            .arg("postgres")
            .arg(work)
            .status();
        run(
            as_postgres(&bin.join("initdb")).arg("-D").arg(&data).args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ]),
            "initdb",
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c max_connections=200 -c shared_buffers=128MB",
            work.display()
        );
        run(
            as_postgres(&bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .args(["-o", &options, "-w", "-l"])
                .arg(work.join("postgres.log"))
                .arg("start"),
            "pg_ctl start",
        )?;
        let pg = Postgres { data, port, bin };
        pg.psql("CREATE TABLE events (seq bigserial PRIMARY KEY, entity text NOT NULL, payload jsonb NOT NULL)")?;
        Ok(pg)
    }

    /// A client program of the server, connected over TCP on 127.0.0.1.
    pub fn client(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
        ]);
        c
    }

    pub fn psql(&self, sql: &str) -> Result<String> {
        run(
            self.client(&self.bin.join("psql"))
                .args(["-q", "-c", sql])
                .arg("postgres"),
            "psql",
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"])
            .output();
    }
}

impl Postgres {
    /// A connection string for clients of this server.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}
