//! A real S3-compatible server for tests: `moto_server` (installed by `scripts/test.sh` into
//! a virtualenv and named by `WORKZ_TEST_MOTO_SERVER`), started on a free loopback port with
//! one bucket, stopped when dropped.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bucket every server starts with.
pub const BUCKET: &str = "workz-cache";

/// A `moto_server` of this test's own (in memory), stopped when dropped.
pub struct S3Server {
    port: u16,
    child: Option<Child>,
}

impl S3Server {
    pub fn start() -> S3Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = S3Server { port, child: None };
        server.restart();
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// (Re)start on the same port, with an empty bucket.
    pub fn restart(&mut self) {
        let program = std::env::var("WORKZ_TEST_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} must be installed (scripts/test.sh installs moto[server]): {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(reply) = self.request("PUT", &format!("/{BUCKET}"), b"") {
                assert!(reply.starts_with("HTTP/1.1 200"), "creating the bucket: {reply}");
                break;
            }
            assert!(Instant::now() < deadline, "moto_server did not answer on port {}", self.port);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// One plain HTTP request (moto accepts unsigned ones); the raw reply.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Option<String> {
        self.request_bytes(method, path, body).map(|reply| String::from_utf8_lossy(&reply).into_owned())
    }

    fn request_bytes(&self, method: &str, path: &str, body: &[u8]) -> Option<Vec<u8>> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        stream.write_all(head.as_bytes()).ok()?;
        stream.write_all(body).ok()?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).ok()?;
        Some(reply)
    }

    /// Another bucket on the same server.
    pub fn create_bucket(&self, name: &str) {
        let reply = self.request("PUT", &format!("/{name}"), b"").expect("moto answers");
        assert!(reply.starts_with("HTTP/1.1 200"), "creating bucket {name}: {reply}");
    }

    /// A signed client for `bucket` (moto refuses unsigned reads of objects).
    pub fn client(&self, bucket: &str) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(self.endpoint())
            .with_region("us-east-1")
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .with_allow_http(true)
            .build()
            .unwrap()
    }

    /// An object, read as a CDN would: its status, headers and body (`None` when the server
    /// does not answer). Usable from any thread.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Fetched> {
        use object_store::ObjectStoreExt;
        let client = self.client(bucket);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            match client.get(&object_store::path::Path::from(key)).await {
                Ok(found) => {
                    let headers = found
                        .attributes
                        .iter()
                        .map(|(k, v)| (format!("{k:?}").to_ascii_lowercase(), v.as_ref().to_string()))
                        .collect();
                    let body = found.bytes().await.ok()?.to_vec();
                    Some(Fetched { status: 200, headers, body })
                }
                Err(object_store::Error::NotFound { .. }) => {
                    Some(Fetched { status: 404, headers: Vec::new(), body: Vec::new() })
                }
                Err(_) => None,
            }
        })
    }

    /// Keys under `prefix` in the cache bucket.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.keys_in(BUCKET, prefix)
    }

    /// Keys under `prefix` in `bucket`.
    pub fn keys_in(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let reply = self.request("GET", &format!("/{bucket}?list-type=2&prefix={prefix}"), b"").unwrap_or_default();
        reply.split("<Key>").skip(1).filter_map(|s| s.split_once("</Key>")).map(|(k, _)| k.to_string()).collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An object read back from the server.
pub struct Fetched {
    pub status: u16,
    /// `(attribute, value)`: `contenttype`, `cachecontrol`, `contentencoding`, …
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Fetched {
    /// A header's value by its object_store attribute name, lower-case (`cachecontrol`).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}
