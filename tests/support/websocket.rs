//! A WebSocket client small enough to read in one go (RFC 6455: the handshake, then unmasked
//! server frames), so that the tests see the dashboard's feed byte for byte, with no library
//! between.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub struct WebSocket {
    stream: TcpStream,
    /// Messages of the last frame not yet looked at.
    pending: std::collections::VecDeque<serde_json::Value>,
}

impl WebSocket {
    /// Open `path` on `address`; `Err(status line)` when the server refuses the upgrade.
    pub fn connect(address: &str, path: &str) -> Result<WebSocket, String> {
        let mut stream = TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_string();
        let status = head.lines().next().unwrap_or("").to_string();
        if status.contains(" 101 ") { Ok(WebSocket { stream, pending: Default::default() }) } else { Err(status) }
    }

    /// The next text message; `None` when the server closed the socket.
    pub fn next_text(&mut self) -> Option<String> {
        loop {
            let mut header = [0u8; 2];
            self.stream.read_exact(&mut header).ok()?;
            let opcode = header[0] & 0x0f;
            let mut length = u64::from(header[1] & 0x7f);
            if length == 126 {
                let mut extended = [0u8; 2];
                self.stream.read_exact(&mut extended).ok()?;
                length = u64::from(u16::from_be_bytes(extended));
            } else if length == 127 {
                let mut extended = [0u8; 8];
                self.stream.read_exact(&mut extended).ok()?;
                length = u64::from_be_bytes(extended);
            }
            let mut payload = vec![0u8; length as usize];
            self.stream.read_exact(&mut payload).ok()?;
            match opcode {
                1 => return Some(String::from_utf8(payload).expect("text frames are UTF-8")),
                8 => return None,
                _ => {}
            }
        }
    }

    /// Messages (a frame holds one, or an array of them) until one of type `kind` satisfies
    /// `wanted`; that one.
    pub fn until(&mut self, kind: &str, wanted: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        loop {
            if let Some(at) = self.pending.iter().position(|m| m["type"] == kind && wanted(m)) {
                self.pending.drain(..at);
                return self.pending.pop_front().expect("found at the front");
            }
            self.pending.clear();
            let text = self.next_text().unwrap_or_else(|| panic!("the socket closed before a {kind} message"));
            match serde_json::from_str(&text).unwrap() {
                serde_json::Value::Array(messages) => self.pending.extend(messages),
                message => self.pending.push_back(message),
            }
        }
    }
}
