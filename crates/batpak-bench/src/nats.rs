//! A NATS server with JetStream (Debian's nats-server) for the benchmarks, started
//! into a temporary directory on a free loopback port and stopped on drop.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A nats-server in a directory of its own, killed on drop.
#[derive(Debug)]
pub struct Nats {
    child: Child,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
}

impl Nats {
    /// Starts `nats-server -js` with its store under `dir`; waits until it is ready.
    pub fn start(dir: &Path) -> Result<Nats> {
        std::fs::create_dir_all(dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log_path = dir.join("nats.log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.join("js"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("nats-server cannot start ({e}); apt-get install nats-server"))?;
        let mut nats = Nats { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = nats.child.try_wait()? {
                return Err(format!("nats-server exited: {status}").into());
            }
            if std::fs::read_to_string(&log_path)?.contains("Server is ready") {
                return Ok(nats);
            }
            if Instant::now() > deadline {
                return Err("nats-server did not become ready".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its address.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
