//! systemd's readiness protocol (`sd_notify`, for `Type=notify` units): one datagram to the
//! socket named by `NOTIFY_SOCKET`, `READY=1` when the node prints its ready line and
//! `STOPPING=1` when it begins its graceful shutdown. Without `NOTIFY_SOCKET` (not under
//! systemd) it does nothing. A dozen lines of std instead of a crate: the protocol is one
//! datagram.

use std::os::unix::net::UnixDatagram;

/// Tells systemd the node is ready (units ordered after it may start).
pub fn ready() {
    send("READY=1\nSTATUS=ready");
}

/// Tells systemd the node is stopping (handing off its writes, leaving).
pub fn stopping() {
    send("STOPPING=1\nSTATUS=handing off writes and leaving");
}

fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|socket| {
        let name = path.as_encoded_bytes();
        match name.strip_prefix(b"@") {
            // A name starting with '@' is in Linux's abstract namespace.
            Some(abstract_name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)?;
                socket.send_to_addr(state.as_bytes(), &addr)
            }
            None => socket.send_to(state.as_bytes(), &path),
        }
    });
    if let Err(error) = sent {
        tracing::warn!(socket = %path.display(), %error, "cannot notify systemd");
    }
}
