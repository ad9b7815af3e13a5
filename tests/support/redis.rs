//! A real `redis-server` for tests (Debian's, installed by `scripts/test.sh`), on a free
//! loopback port with a data dir of its own, stopped when dropped.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` of this test's own, stopped when dropped.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Append-only file with a sync per write: a restart finds every acknowledged write.
    persistent: bool,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = RedisServer { port, dir: tempfile::tempdir().unwrap(), child: None, persistent: false };
        server.restart();
        server
    }

    /// A server whose data survives a kill and a restart (AOF, `appendfsync always`).
    pub fn start_persistent() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = RedisServer { port, dir: tempfile::tempdir().unwrap(), child: None, persistent: true };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// (Re)start on the same port: empty, or with its data when persistent.
    pub fn restart(&mut self) {
        let persistence: &[&str] =
            if self.persistent { &["--appendonly", "yes", "--appendfsync", "always"] } else { &["--appendonly", "no"] };
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(persistence)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it with apt)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.command(&[b"PING"]).as_deref() != Some("+PONG\r\n") {
            assert!(Instant::now() < deadline, "redis-server did not answer on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kill the server at once (SIGKILL, as a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// One command over RESP; the raw reply (None when the server does not answer).
    pub fn command(&self, args: &[&[u8]]) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg);
            request.extend(b"\r\n");
        }
        stream.write_all(&request).ok()?;
        let mut reply = vec![0u8; 1 << 16];
        let n = stream.read(&mut reply).ok()?;
        Some(String::from_utf8_lossy(&reply[..n]).into_owned())
    }

    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let reply = self.command(&[b"KEYS", pattern.as_bytes()]).unwrap_or_default();
        reply.lines().filter(|l| !l.starts_with('*') && !l.starts_with('$')).map(str::to_string).collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
