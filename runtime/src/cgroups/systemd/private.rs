//! systemd's direct socket, `/run/systemd/private`, for zbus.
//!
//! On that socket systemd marks every message it sends with the sender
//! `org.freedesktop.systemd1` (`sd_bus_set_sender` in systemd's src/core/dbus.c: no bus daemon
//! assigns names there). zbus 5 accepts the field when it parses a message but panics when it
//! reads it back, because that is not a unique connection name (zbus#1497, reproduced with
//! zbus 5.19 against systemd 257: the connection's reader task dies and every call hangs).
//! So the read half handed to zbus frames each incoming message itself and rewrites that one
//! header value to `:org.freedesktop.systemd`, a valid unique name of the same length: nothing
//! else moves. The SASL exchange is done here too (EXTERNAL with our uid, no unix-fd
//! negotiation: systemd sends none), so zbus gets an authenticated socket and reads messages
//! only. No D-Bus marshalling is written here beyond walking the header fields.

use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use zbus::connection::socket::{ReadHalf, Socket, Split};

/// The sender systemd writes on its direct socket, and what zbus is shown instead.
const SYSTEMD_SENDER: &[u8] = b"org.freedesktop.systemd1";
const REWRITTEN_SENDER: &[u8] = b":org.freedesktop.systemd";
/// The header field code of SENDER (D-Bus specification, "Message Format").
const FIELD_SENDER: u8 = 7;
/// The D-Bus limit on a whole message.
const MAX_MESSAGE: usize = 128 << 20;

/// Authenticates on a connected socket (SASL EXTERNAL with this process's uid) and returns
/// the server's GUID. Errors: the server refused, or closed the connection.
pub async fn authenticate(stream: &mut tokio::net::UnixStream) -> io::Result<String> {
    let uid = nix::unistd::geteuid().as_raw().to_string();
    let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
    stream
        .write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())
        .await?;
    let mut line = Vec::with_capacity(64);
    while !line.ends_with(b"\r\n") {
        if line.len() > 512 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "SASL reply too long",
            ));
        }
        line.push(stream.read_u8().await?);
    }
    let reply = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
    let Some(guid) = reply.strip_prefix("OK ") else {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("authentication refused: {reply:?}"),
        ));
    };
    let guid = guid.trim().to_string();
    stream.write_all(b"BEGIN\r\n").await?;
    Ok(guid)
}

/// An authenticated connection to systemd's direct socket, as zbus's socket type.
#[derive(Debug)]
pub struct PrivateSocket {
    read: FixSender,
    write: OwnedWriteHalf,
}

impl PrivateSocket {
    pub fn new(stream: tokio::net::UnixStream) -> PrivateSocket {
        let (read, write) = stream.into_split();
        PrivateSocket {
            read: FixSender {
                inner: read,
                pending: Vec::new(),
                at: 0,
            },
            write,
        }
    }
}

impl Socket for PrivateSocket {
    type ReadHalf = FixSender;
    type WriteHalf = OwnedWriteHalf;

    fn split(self) -> Split<FixSender, OwnedWriteHalf> {
        Split::new(self.read, self.write)
    }
}

/// The read half: whole messages, sender rewritten, handed out as zbus asks for bytes.
#[derive(Debug)]
pub struct FixSender {
    inner: OwnedReadHalf,
    pending: Vec<u8>,
    at: usize,
}

#[async_trait::async_trait]
impl ReadHalf for FixSender {
    async fn recvmsg(&mut self, buf: &mut [u8]) -> io::Result<(usize, Vec<std::os::fd::OwnedFd>)> {
        if self.at == self.pending.len() {
            match read_message(&mut self.inner).await? {
                Some(m) => {
                    self.pending = m;
                    self.at = 0;
                    fix_sender(&mut self.pending);
                }
                None => return Ok((0, vec![])),
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok((n, vec![]))
    }
}

fn u32_at(msg: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = msg.get(at..at + 4)?.try_into().ok()?;
    Some(match msg.first()? {
        b'B' => u32::from_be_bytes(b),
        _ => u32::from_le_bytes(b),
    })
}

/// The length of the message whose first 16 bytes are `head`: header, padding to 8, body.
pub(super) fn message_len(head: &[u8]) -> io::Result<usize> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed D-Bus message header");
    if !matches!(head.first(), Some(b'l' | b'B')) {
        return Err(bad());
    }
    let body = u32_at(head, 4).ok_or_else(bad)? as usize;
    let fields = u32_at(head, 12).ok_or_else(bad)? as usize;
    let header = (16 + fields).next_multiple_of(8);
    let total = header + body;
    if total > MAX_MESSAGE {
        return Err(bad());
    }
    Ok(total)
}

/// Reads one whole message; `None` at a clean end of stream.
async fn read_message(r: &mut OwnedReadHalf) -> io::Result<Option<Vec<u8>>> {
    let mut msg = vec![0u8; 16];
    let mut got = 0;
    while got < 16 {
        let n = r.read(&mut msg[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        got += n;
    }
    let total = message_len(&msg)?;
    msg.resize(total, 0);
    r.read_exact(&mut msg[16..]).await?;
    Ok(Some(msg))
}

/// Rewrites a SENDER header field holding systemd's well-known name (same length, in place).
/// Anything it does not understand is left as it is.
fn fix_sender(msg: &mut [u8]) {
    let Some(fields) = u32_at(msg, 12) else {
        return;
    };
    let end = (16 + fields as usize).min(msg.len());
    let mut i = 16;
    while i < end {
        i = i.next_multiple_of(8);
        let (Some(&code), Some(&siglen)) = (msg.get(i), msg.get(i + 1)) else {
            return;
        };
        let sig_at = i + 2;
        let Some(sig) = msg.get(sig_at..sig_at + siglen as usize) else {
            return;
        };
        let sig = sig.to_vec();
        i = sig_at + siglen as usize + 1;
        match sig.as_slice() {
            b"s" | b"o" => {
                i = i.next_multiple_of(4);
                let Some(len) = u32_at(msg, i) else { return };
                let start = i + 4;
                let stop = start + len as usize;
                if code == FIELD_SENDER && msg.get(start..stop) == Some(SYSTEMD_SENDER) {
                    msg[start..stop].copy_from_slice(REWRITTEN_SENDER);
                }
                i = stop + 1;
            }
            b"g" => {
                let Some(&len) = msg.get(i) else { return };
                i += 1 + len as usize + 1;
            }
            b"u" => i = i.next_multiple_of(4) + 4,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::message::Message;

    const PLACEHOLDER: &str = ":placeholder.name.xxxxxx";

    /// A signal as systemd sends it on its direct socket: sender org.freedesktop.systemd1.
    fn systemd_signal() -> Vec<u8> {
        let m = Message::signal(
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
            "JobRemoved",
        )
        .unwrap()
        .sender(PLACEHOLDER)
        .unwrap()
        .build(&(7u32, "/org/freedesktop/systemd1/job/7", "a.scope", "done"))
        .unwrap();
        let mut bytes = m.data().to_vec();
        // Put systemd's sender where the placeholder (same length) is.
        let at = bytes
            .windows(SYSTEMD_SENDER.len())
            .position(|w| w == PLACEHOLDER.as_bytes())
            .unwrap();
        bytes[at..at + 24].copy_from_slice(SYSTEMD_SENDER);
        bytes
    }

    #[test]
    fn systemds_sender_is_rewritten_in_place() {
        let mut bytes = systemd_signal();
        let before = bytes.clone();
        let len = message_len(&bytes[..16]).unwrap();
        assert_eq!(len, bytes.len());
        fix_sender(&mut bytes);
        assert_eq!(bytes.len(), before.len());
        let diff: Vec<usize> = (0..bytes.len())
            .filter(|i| bytes[*i] != before[*i])
            .collect();
        assert!(!diff.is_empty() && diff.len() <= 24, "{diff:?}");
        assert!(bytes
            .windows(REWRITTEN_SENDER.len())
            .any(|w| w == REWRITTEN_SENDER));
        // The body (unit name, result) is untouched.
        assert!(bytes.windows(7).any(|w| w == b"a.scope"));
    }

    #[test]
    fn other_messages_pass_unchanged() {
        let m = Message::method_return(
            &Message::method_call("/", "Ping")
                .unwrap()
                .sender(":1.2")
                .unwrap()
                .build(&())
                .unwrap()
                .header(),
        )
        .unwrap()
        .sender(":1.7")
        .unwrap()
        .build(&("org.freedesktop.systemd1",))
        .unwrap();
        let mut bytes = m.data().to_vec();
        let before = bytes.clone();
        fix_sender(&mut bytes);
        // The same name in the body is not a header field: left alone.
        assert_eq!(bytes, before);
        for garbage in [
            &b""[..],
            b"x",
            b"l\x01\x00\x01\xff\xff\xff\xff",
            &[b'l'; 40],
        ] {
            let mut g = garbage.to_vec();
            fix_sender(&mut g);
        }
        assert!(message_len(b"Zxxxxxxxxxxxxxxx").is_err());
    }
}
