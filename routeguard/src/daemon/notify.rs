//! systemd's readiness protocol (`sd_notify(3)`): a datagram to `$NOTIFY_SOCKET`, when set.
//! Without systemd (or with `Type=simple`) this does nothing.

use std::os::{
    linux::net::SocketAddrExt,
    unix::net::{SocketAddr, UnixDatagram},
};

/// Sends `state` (e.g. `READY=1`); failures are logged at debug level and otherwise ignored,
/// as sd_notify does.
pub fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let result = (|| {
        let socket = UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        // A leading '@' names a socket in the abstract namespace.
        let addr = match bytes.strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name)?,
            None => SocketAddr::from_pathname(&path)?,
        };
        socket.send_to_addr(state.as_bytes(), &addr).map(|_| ())
    })();
    if let Err(e) = result {
        tracing::debug!("sd_notify {state}: {e}");
    }
}
