//! A client for CRI's streaming server (the URL Exec/Attach return), speaking the websocket
//! form of Kubernetes' remotecommand protocol, `v4.channel.k8s.io`: every binary message
//! starts with its channel (0 stdin, 1 stdout, 2 stderr, 3 status, 4 terminal size).

use std::time::Duration;
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

const PROTOCOL: &str = "v4.channel.k8s.io";

#[derive(Debug, Default, PartialEq)]
pub struct Streamed {
    pub stdout: String,
    pub stderr: String,
    /// The remotecommand status on channel 3 (exec only): None when the stream ended without.
    pub exit_code: Option<i32>,
}

type Socket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

/// Opens the websocket at `url` with `v4.channel.k8s.io`, reads timing out after `read_timeout`.
fn connect(url: &str, read_timeout: Duration) -> Result<Socket, String> {
    let ws_url = url.replacen("http://", "ws://", 1);
    let mut req = ws_url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("{url}: {e}"))?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", PROTOCOL.parse().unwrap());
    let (ws, resp) = tungstenite::connect(req).map_err(|e| format!("connect {url}: {e}"))?;
    let agreed = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if agreed != PROTOCOL {
        return Err(format!("server chose protocol {agreed:?}"));
    }
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(read_timeout))
            .map_err(|e| e.to_string())?;
    }
    Ok(ws)
}

/// Attaches at `url` (an Attach URL whose stream stays open while the container runs), sends
/// `stdin`, and reads stdout until it holds `want` or `limit` has passed; then closes the
/// stream. The stdout read so far.
pub fn attach_until(
    url: &str,
    stdin: &[u8],
    want: &str,
    limit: Duration,
) -> Result<String, String> {
    let deadline = std::time::Instant::now() + limit;
    let mut ws = connect(url, Duration::from_millis(500))?;
    let mut m = vec![0u8];
    m.extend_from_slice(stdin);
    ws.send(Message::Binary(m.into()))
        .map_err(|e| format!("send stdin: {e}"))?;
    let mut stdout = String::new();
    while !stdout.contains(want) {
        if std::time::Instant::now() > deadline {
            let _ = ws.close(None);
            return Err(format!(
                "no {want:?} on stdout within {limit:?} (got {stdout:?})"
            ));
        }
        match ws.read() {
            Ok(Message::Binary(b)) if b.first() == Some(&1) => {
                stdout.push_str(&String::from_utf8_lossy(&b[1..]))
            }
            Ok(Message::Close(_)) => return Err(format!("stream closed; stdout {stdout:?}")),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("read: {e} (stdout {stdout:?})")),
        }
    }
    let _ = ws.close(None);
    let _ = ws.flush();
    Ok(stdout)
}

/// Connects to `url`, sends the terminal size (if any) and `stdin`, and collects the output
/// until the server closes the stream.
pub fn stream(url: &str, size: Option<(u16, u16)>, stdin: &[u8]) -> Result<Streamed, String> {
    let mut ws = connect(url, Duration::from_secs(30))?;
    let send = |ws: &mut tungstenite::WebSocket<_>, ch: u8, data: &[u8]| {
        let mut m = vec![ch];
        m.extend_from_slice(data);
        ws.send(Message::Binary(m.into()))
            .map_err(|e| format!("send on channel {ch}: {e}"))
    };
    if let Some((w, h)) = size {
        send(
            &mut ws,
            4,
            format!(r#"{{"Width":{w},"Height":{h}}}"#).as_bytes(),
        )?;
    }
    if !stdin.is_empty() {
        send(&mut ws, 0, stdin)?;
    }
    let mut out = Streamed::default();
    loop {
        match ws.read() {
            Ok(Message::Binary(b)) if !b.is_empty() => {
                let text = String::from_utf8_lossy(&b[1..]);
                match b[0] {
                    1 => out.stdout.push_str(&text),
                    2 => out.stderr.push_str(&text),
                    3 if !text.is_empty() => out.exit_code = Some(exit_code(&text)?),
                    _ => {}
                }
            }
            Ok(Message::Close(_)) => {
                // The server's close ends the stream (RFC 6455 §1.4): answer it and stop
                // reading; what a server writes after its close frame is not part of it
                // (containerd 2.x's streaming server sometimes does).
                let _ = ws.flush();
                return Ok(out);
            }
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return Ok(out)
            }
            Err(tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            )) => return Ok(out),
            Err(e) => return Err(format!("read: {e} (so far {out:?})")),
        }
    }
}

/// The exit code in a remotecommand v4 status: Success is 0; a non-zero exit is a Failure
/// whose cause "ExitCode" carries the number.
fn exit_code(status: &str) -> Result<i32, String> {
    let v: serde_json::Value =
        serde_json::from_str(status).map_err(|e| format!("status {status:?}: {e}"))?;
    if v["status"] == "Success" {
        return Ok(0);
    }
    v["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["reason"] == "ExitCode")
        .and_then(|c| c["message"].as_str()?.parse().ok())
        .ok_or_else(|| format!("status without an exit code: {status}"))
}
