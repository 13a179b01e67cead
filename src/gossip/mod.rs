//! Node-to-node gossip over quinn: the sending lanes ([`Transport`]), the receiving streams
//! ([`receive_gossip`]), and the [`Firewall`] that cuts links on purpose (demo and tests).

mod firewall;
mod receive;
mod transport;

use std::net::{SocketAddr, UdpSocket};

pub use firewall::Firewall;
pub use receive::{Inbound, receive_gossip};
pub use transport::{Transport, TransportStats};

/// The receive buffer a node asks the kernel for on its gossip socket. Every peer's packets
/// land in this one buffer, and they are dropped when it is full, which happens whenever the
/// node is not scheduled for a moment under heavy writes: quinn lets each stream have 1.25 MB
/// in flight, several times the kernel's usual 208 KiB. Three nodes under `redis-benchmark
/// -P 16` (300,000 SETs, a busy 2-core machine) lost 612 to 1,070 packets with 208 KiB, each
/// resent after a loss timer and each shrinking the sender's congestion window; with 4 MiB,
/// none. Kernel memory, used only while packets wait; Linux caps it at `net.core.rmem_max`.
pub const GOSSIP_RECEIVE_BUFFER: usize = 4 * 1024 * 1024;

/// Binds a UDP socket on `addr` and asks for a [`GOSSIP_RECEIVE_BUFFER`]-byte receive buffer,
/// at best. Returns the socket, and the buffer the kernel granted or why it refused (BSDs
/// refuse a size above `kern.ipc.maxsockbuf`); the socket is usable either way.
pub fn bind_buffered(addr: SocketAddr) -> std::io::Result<(UdpSocket, std::io::Result<usize>)> {
    let socket = UdpSocket::bind(addr)?;
    let sock = socket2::SockRef::from(&socket);
    let granted = sock.set_recv_buffer_size(GOSSIP_RECEIVE_BUFFER).and_then(|()| {
        // Linux reports twice what it grants (the other half is its bookkeeping).
        let reported = sock.recv_buffer_size()?;
        Ok(if cfg!(target_os = "linux") { reported / 2 } else { reported })
    });
    Ok((socket, granted))
}

/// Binds the gossip socket on `listen` ([`bind_buffered`]); the log says when the kernel gave
/// less receive buffer than asked, or refused, and the node goes on with what it has.
pub fn bind_socket(listen: SocketAddr) -> std::io::Result<UdpSocket> {
    let (socket, granted) = bind_buffered(listen)?;
    match granted {
        Err(error) => {
            tracing::warn!(%error, wanted = GOSSIP_RECEIVE_BUFFER, "the kernel refused the gossip socket's receive buffer size; going on with its default");
        }
        Ok(granted) if granted < GOSSIP_RECEIVE_BUFFER => {
            tracing::info!(
                granted,
                wanted = GOSSIP_RECEIVE_BUFFER,
                "the kernel capped the gossip socket's receive buffer (net.core.rmem_max): under heavy writes, packets peers send here may drop and be resent; raise it to at least {GOSSIP_RECEIVE_BUFFER}"
            );
        }
        Ok(_) => {}
    }
    Ok(socket)
}

/// Resolves `host:port` (DNS names are looked up each time, so a moved seed is found).
pub async fn resolve(addr: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = addr.parse() {
        return Ok(addr);
    }
    let mut found =
        tokio::net::lookup_host(addr).await.map_err(|error| format!("{addr}: {error}"))?;
    found.next().ok_or_else(|| format!("{addr}: no address found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a kernel setting, if this is Linux.
    fn sysctl(name: &str) -> Option<usize> {
        std::fs::read_to_string(format!("/proc/sys/net/core/{name}")).ok()?.trim().parse().ok()
    }

    #[test]
    fn the_gossip_socket_gets_the_receive_buffer_it_asks_for_up_to_the_kernels_cap() {
        let (Some(default), Some(max)) = (sysctl("rmem_default"), sysctl("rmem_max")) else {
            return; // Not Linux: nothing to compare with.
        };
        if 2 * GOSSIP_RECEIVE_BUFFER.min(max) == default {
            return; // Without the request a socket gets `rmem_default`: no telling them apart.
        }
        let socket = bind_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let granted = socket2::SockRef::from(&socket).recv_buffer_size().unwrap();
        // Linux grants the request capped at rmem_max, and reports it doubled.
        assert_eq!(granted, 2 * GOSSIP_RECEIVE_BUFFER.min(max), "default {default}, max {max}");
    }

    /// Two nodes' endpoints on loopback (its MTU is 65,536) find `UDP_PAYLOAD_MAX`-byte packets
    /// and keep them through an 8 MiB write. The test fails if quinn ever packs more packets
    /// into one segmented send than `UDP_PAYLOAD_MAX` allows for: the kernel would refuse the
    /// batches, quinn would count their packets lost and take the MTU back to 1,200 (as with a
    /// 9,000-byte ceiling). Losses alone are not asserted: a busy machine whose kernel caps the
    /// receive buffer (`GOSSIP_RECEIVE_BUFFER`) may drop a few packets of any size. Without
    /// segmentation offload (no GSO) quinn sends a packet at a time and this passes anyway.
    #[tokio::test]
    async fn loopback_gossip_finds_the_largest_packets_and_keeps_them() {
        use crate::tls::{ALPN_GOSSIP, ClusterKey, SERVER_NAME, TlsIdentity, UDP_PAYLOAD_MAX};
        const WRITE: usize = 8 * 1024 * 1024;
        let key = ClusterKey::generate();
        let identity = TlsIdentity::new(std::slice::from_ref(&key)).unwrap();
        let endpoint = |server: Option<quinn::ServerConfig>| {
            let socket = bind_socket("127.0.0.1:0".parse().unwrap()).unwrap();
            let address = socket.local_addr().unwrap().to_string();
            let config = crate::tls::endpoint_config(&key, &address).unwrap();
            let runtime = std::sync::Arc::new(quinn::TokioRuntime);
            quinn::Endpoint::new(config, server, socket, runtime).unwrap()
        };
        let receiver = endpoint(Some(identity.server_config(&[ALPN_GOSSIP]).unwrap()));
        let sender = endpoint(None);
        let address = receiver.local_addr().unwrap();
        let received = tokio::spawn(async move {
            let connection = receiver.accept().await.unwrap().await.unwrap();
            // The last stream is the large one; the connection stays open until it is read.
            loop {
                let mut stream = connection.accept_uni().await.unwrap();
                let read = stream.read_to_end(WRITE).await.unwrap().len();
                if read == WRITE {
                    return (connection, read);
                }
            }
        });
        let config = identity.client_config(ALPN_GOSSIP).unwrap();
        let connection = sender.connect_with(config, address, SERVER_NAME).unwrap().await.unwrap();
        let send = |bytes: Vec<u8>| {
            let connection = connection.clone();
            async move {
                let mut stream = connection.open_uni().await.unwrap();
                stream.write_all(&bytes).await.unwrap();
                stream.finish().unwrap();
                stream.stopped().await.unwrap();
            }
        };
        // Discovery probes as data flows: small writes until it is done, 20 at most.
        let timeout = std::time::Duration::from_secs(30);
        let discovered = async {
            for _ in 0..20 {
                if connection.stats().path.current_mtu == UDP_PAYLOAD_MAX {
                    break;
                }
                send(vec![1; 64 * 1024]).await;
            }
        };
        tokio::time::timeout(timeout, discovered).await.unwrap();
        let found = connection.stats().path;
        assert_eq!(found.current_mtu, UDP_PAYLOAD_MAX, "{found:?}");
        tokio::time::timeout(timeout, send(vec![2; WRITE])).await.unwrap();
        let after = connection.stats().path;
        assert_eq!(after.current_mtu, UDP_PAYLOAD_MAX, "{after:?}");
        // Fewer than a third of the packets a 1,452-byte ceiling needs (about 5,800): the
        // large ones carried it (about 1,300 here, the figure the README quotes).
        assert!(after.sent_packets - found.sent_packets < (WRITE / 1_452 / 3) as u64, "{after:?}");
        let (_open, read) = tokio::time::timeout(timeout, received).await.unwrap().unwrap();
        assert_eq!(read, WRITE);
    }
}
