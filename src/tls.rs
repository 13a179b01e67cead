//! The cluster key and the mutual-TLS configuration of the quinn endpoint.
//!
//! A user configures one secret, the cluster key. Every holder of the key derives the same CA
//! from it (an Ed25519 key pair seeded by HKDF over the key, a certificate with fixed fields), so
//! no certificate is ever distributed. Each process then issues itself a leaf certificate with a
//! fresh key, signed by the CA of the first key, and trusts the CAs of all keys: during a key
//! rotation, the first key signs and all keys are trusted. Without a key, a handshake fails in
//! both directions, because server and client certificates are both required and verified.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{NoInitialCipherSuite, QuicClientConfig, QuicServerConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SerialNumber,
};
use ring::{digest, hkdf};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};

/// The DNS name in every leaf certificate and the server name every `connect` passes. It is
/// the same on all nodes because identity inside the cluster is the protocol's node id; TLS
/// only proves that the peer holds the cluster key.
pub const SERVER_NAME: &str = "chorus";

/// ALPN of node-to-node gossip traffic. Its number changes with the gossip wire format (2: a
/// digest names the writers its sender receives as streams of pushes; 3: a push names the
/// writes it left out because one of its writes replaced them), so nodes of two formats
/// refuse each other's connections, with a reason in the log, instead of failing to decode
/// every message.
pub const ALPN_GOSSIP: &[u8] = b"chorus-gossip/3";

/// ALPN of client requests (the CLI and other RPC callers).
pub const ALPN_RPC: &[u8] = b"chorus-rpc/1";

/// Interval of QUIC keep-alives: well under the idle timeout, so an idle but healthy
/// connection (a quiet peer between gossip rounds) is never closed for idleness.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// Time without any packet after which a connection is dropped: six missed keep-alives, long
/// enough to ride out a short network hiccup, short enough to notice a dead peer.
pub const IDLE_TIMEOUT_MS: u32 = 30_000;

// A peer must see several keep-alives per idle timeout, or one lost packet would drop it.
const _: () = assert!(KEEP_ALIVE_INTERVAL.as_millis() * 3 <= IDLE_TIMEOUT_MS as u128);

/// Keep-alive interval of a client's connection (the CLI, a watch, the Rust client).
pub const CLIENT_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(1);

/// Idle timeout of a client's connection: a client learns within it that its node died
/// (kill -9: no close arrives), where 30 s left a `watch` hanging half a minute. QUIC takes the
/// smaller of the two sides' timeouts, so nodes keep 30 s between themselves.
pub const CLIENT_IDLE_TIMEOUT_MS: u32 = 4_000;

const _: () = assert!(CLIENT_KEEP_ALIVE_INTERVAL.as_millis() * 3 <= CLIENT_IDLE_TIMEOUT_MS as u128);

/// Largest UDP payload a node sends to or accepts from another node: the ceiling of QUIC's
/// path MTU discovery, which starts at 1,200 bytes and settles within 20 bytes of what the
/// path carries. quinn's default ceiling is 1,452 (an Ethernet path); with this one, under
/// load, a loopback or jumbo-frame path (9,001 bytes inside an AWS VPC) carries about a
/// quarter of the packets for the same writes, each encrypted, framed, tracked and
/// acknowledged on its own. It is no higher because quinn sends up to
/// `QUINN_TRANSMIT_SEGMENTS` packets in one segmented `sendmsg` (GSO), which must fit one
/// IPv4 UDP datagram: beyond that the kernel refuses the batch, quinn-udp drops it without a
/// word (quinn-rs/quinn#2199), and loss detection takes the MTU back to 1,200 (seen at 9,000).
pub const UDP_PAYLOAD_MAX: u16 = 6_550;

/// The round trip a node assumes for a connection it has not measured yet (quinn's default is
/// RFC 9002's 333 ms, for a path known nothing about). Nodes of one cluster sit on one network
/// (a data centre, a VPC: well under a millisecond). It sets the handshake's probe timeout
/// (three times it), and so how long a connection closed in its handshake (a lane dialling a
/// peer that is down, when the node stops) holds the node's socket: three probe timeouts, 3 s
/// at 333 ms, 450 ms at this, within `QUIC_RELEASE_TIMEOUT`. Over a longer path (another
/// region, 150 ms) both sides send a few probes of their handshake packets before the first
/// answer comes (the server within QUIC's three-times amplification limit): a few small packets
/// more per connection, no loss declared, no window cut.
pub const INITIAL_RTT: Duration = Duration::from_millis(50);

/// Packets quinn 0.11 puts in one segmented send: a copy of `MAX_TRANSMIT_SEGMENTS` in quinn's
/// `connection.rs`, which quinn does not export. A quinn upgrade that raises it fails
/// `gossip::tests::loopback_gossip_finds_the_largest_packets_and_keeps_them`.
const QUINN_TRANSMIT_SEGMENTS: usize = 10;

/// The largest UDP payload of one IPv4 datagram (IPv6 allows 20 bytes more).
const UDP_DATAGRAM_MAX_IPV4: usize = 65_535 - 20 - 8;

const _: () = assert!(
    UDP_PAYLOAD_MAX >= 1_200
        && UDP_PAYLOAD_MAX as usize * QUINN_TRANSMIT_SEGMENTS <= UDP_DATAGRAM_MAX_IPV4
);

/// Prefix of a key's text form, so a key pasted in the wrong place is recognised.
const KEY_PREFIX: &str = "chorus-key-";
const KEY_LEN: usize = 32;

/// HKDF `info` for the CA seed; the version lets a future derivation change without
/// colliding with this one.
const CA_LABEL: &[u8] = b"chorus ca v1";

/// HKDF `info` prefixes for an endpoint's stateless-reset key and connection-id key; the
/// address the node is known by follows them.
const RESET_LABEL: &[u8] = b"chorus reset v1 ";
const CID_LABEL: &[u8] = b"chorus cid v1 ";

/// The PKCS#8 v1 DER header of an Ed25519 private key; the 32-byte seed follows it.
const ED25519_PKCS8_PREFIX: &[u8; 16] =
    b"\x30\x2e\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20";

/// The built-in development key. It is public (it is in the source), so it only keeps a
/// loopback-only node from talking to a mistyped production cluster; it protects nothing.
const DEVELOPMENT_KEY: [u8; KEY_LEN] = *b"chorus-development-key-insecure!";

/// The cluster key: a 32-byte secret shared by every node and client of one cluster.
///
/// `Display` prints the secret (that is how `chorus keygen` hands it out); `Debug` prints only
/// a fingerprint, so logging a value that contains a key does not leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey([u8; KEY_LEN]);

impl ClusterKey {
    /// A new random key from the thread-local CSPRNG, which is seeded from the OS.
    pub fn generate() -> Self {
        use rand::Rng as _;
        let mut bytes = [0; KEY_LEN];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The fixed development key used when none is configured. It is public and insecure:
    /// a node using it must listen on loopback only.
    pub fn development() -> Self {
        Self(DEVELOPMENT_KEY)
    }

    /// Whether this is the built-in development key.
    pub fn is_development(&self) -> bool {
        self.0 == DEVELOPMENT_KEY
    }

    /// The first 8 hex digits of the SHA-256 of the key: enough to tell keys apart in logs,
    /// far too little to help guess the key.
    pub fn fingerprint(&self) -> String {
        hex(&digest::digest(&digest::SHA256, &self.0).as_ref()[..4])
    }

    /// The marker a data directory of this cluster carries: 16 bytes of a SHA-256 of the key
    /// under a label of its own (so it is neither the log fingerprint nor any TLS secret).
    pub fn data_marker(&self) -> [u8; 16] {
        let mut context = digest::Context::new(&digest::SHA256);
        context.update(b"chorus data directory marker\0");
        context.update(&self.0);
        let mut marker = [0; 16];
        marker.copy_from_slice(&context.finish().as_ref()[..16]);
        marker
    }
}

impl fmt::Display for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{KEY_PREFIX}{}", hex(&self.0))
    }
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterKey({})", self.fingerprint())
    }
}

/// Why a text is not a cluster key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyParseError {
    /// The text does not start with `chorus-key-`.
    #[error("a cluster key starts with `{KEY_PREFIX}`")]
    MissingPrefix,
    /// The text after the prefix is not 64 bytes long; it is this many.
    #[error("a cluster key has 64 hex digits after `{KEY_PREFIX}`, not {0}")]
    WrongLength(usize),
    /// The byte at this offset after the prefix is not a hex digit.
    #[error("a cluster key has a non-hex character at {0}")]
    NotHex(usize),
}

impl FromStr for ClusterKey {
    type Err = KeyParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits =
            text.trim().strip_prefix(KEY_PREFIX).ok_or(KeyParseError::MissingPrefix)?.as_bytes();
        if digits.len() != KEY_LEN * 2 {
            return Err(KeyParseError::WrongLength(digits.len()));
        }
        // Indexing cannot panic: `position` < 64 = `digits.len()`, checked just above.
        let nibble = |position: usize| {
            (digits[position] as char)
                .to_digit(16)
                .map(|value| value as u8)
                .ok_or(KeyParseError::NotHex(position))
        };
        let mut bytes = [0; KEY_LEN];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = (nibble(2 * index)? << 4) | nibble(2 * index + 1)?;
        }
        Ok(Self(bytes))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Why a TLS identity or configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// No cluster key was given; at least one is needed to sign our certificate.
    #[error("no cluster key given")]
    NoKeys,
    /// Deriving the CA seed or an endpoint key from a cluster key failed.
    #[error("could not derive keys from the cluster key")]
    Derive,
    /// rcgen could not build a key pair or certificate.
    #[error("could not build a certificate")]
    Certificate(#[from] rcgen::Error),
    /// rustls rejected a certificate, key or protocol setting.
    #[error("invalid TLS configuration")]
    Rustls(#[from] rustls::Error),
    /// The client certificate verifier could not be built.
    #[error("could not build the peer verifier")]
    Verifier(#[source] VerifierBuilderError),
    /// The rustls configuration lacks the cipher suite QUIC needs for its initial packets.
    #[error("TLS configuration unusable for QUIC")]
    Quic(#[source] NoInitialCipherSuite),
}

/// The CA every holder of `key` derives, byte for byte: the seed, the serial, the names and
/// the validity are all fixed, and Ed25519 signatures are deterministic.
fn derive_ca(key: &ClusterKey) -> Result<CertifiedIssuer<'static, KeyPair>, TlsError> {
    let mut seed = [0; 32];
    hkdf::Salt::new(hkdf::HKDF_SHA256, &[])
        .extract(&key.0)
        .expand(&[CA_LABEL], hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut seed))
        .map_err(|_| TlsError::Derive)?;
    let mut pkcs8 = Vec::with_capacity(ED25519_PKCS8_PREFIX.len() + seed.len());
    pkcs8.extend_from_slice(ED25519_PKCS8_PREFIX);
    pkcs8.extend_from_slice(&seed);
    let ca_key = KeyPair::try_from(&pkcs8[..])?;

    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(format!("chorus cluster CA {}", key.fingerprint()));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(SerialNumber::from_slice(&[1]));
    set_validity(&mut params);
    Ok(CertifiedIssuer::self_signed(params, ca_key)?)
}

/// The endpoint configuration of a node that peers know at `address`, the same in every
/// process started with `key` for that address.
///
/// A peer that was talking to a previous process on this address keeps sending into that
/// connection after the process died, until the connection's idle timeout. quinn answers a
/// packet for a connection it does not know with a stateless reset (RFC 9000, section 10.3),
/// which the peer accepts only if its token is the one the dead process announced: the token
/// is an HMAC of the connection id under the endpoint's reset key. Deriving that key (and the
/// key that marks the connection ids as this endpoint's, which quinn checks before resetting)
/// from the cluster key and the address lets a restarted process end its predecessor's
/// connections at the first packet a peer sends, so the peer reconnects at once. Only holders
/// of the cluster key can compute the tokens.
pub fn endpoint_config(key: &ClusterKey, address: &str) -> Result<quinn::EndpointConfig, TlsError> {
    let reset_key: [u8; 32] = derive(key, RESET_LABEL, address)?;
    let cid_key: [u8; 32] = derive(key, CID_LABEL, address)?;
    // Safe: a slice of 8 bytes always converts to an array of 8.
    let cid_key = u64::from_le_bytes(cid_key[..8].try_into().expect("8 of 32 bytes"));
    let reset_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &reset_key);
    let mut config = quinn::EndpointConfig::new(Arc::new(reset_key));
    // Advertised to peers as the largest datagram this node takes. quinn sizes its receive
    // buffer by it: 32 slots of 64 segments, 13 MB of address space (3 MB at 1,472), of
    // which the kernel fills at most 64 KiB a slot, about 2 MiB.
    // Safe: quinn takes 1,200 to 65,527, and the constant's assertion keeps it in range.
    config.max_udp_payload_size(UDP_PAYLOAD_MAX).expect("a UDP payload size quinn takes");
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    Ok(config)
}

/// 32 bytes derived from `key` for `label` and `address`.
fn derive(key: &ClusterKey, label: &[u8], address: &str) -> Result<[u8; 32], TlsError> {
    let mut out = [0; 32];
    hkdf::Salt::new(hkdf::HKDF_SHA256, &[])
        .extract(&key.0)
        .expand(&[label, address.as_bytes()], hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut out))
        .map_err(|_| TlsError::Derive)?;
    Ok(out)
}

fn common_name(name: String) -> DistinguishedName {
    let mut distinguished_name = DistinguishedName::new();
    distinguished_name.push(DnType::CommonName, name);
    distinguished_name
}

/// A fixed, very wide validity: nodes do not agree on a clock, and a certificate is revoked
/// by rotating the cluster key, not by expiry.
fn set_validity(params: &mut CertificateParams) {
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(4096, 1, 1);
}

/// This process's TLS identity: a leaf certificate signed by the CA of the first cluster key,
/// and the CAs of all cluster keys as trusted roots.
pub struct TlsIdentity {
    provider: Arc<CryptoProvider>,
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
    fingerprints: Vec<String>,
}

impl TlsIdentity {
    /// Derives the CAs of `keys` and issues a leaf certificate with a fresh key, signed by
    /// the first key's CA. Fails if `keys` is empty.
    pub fn new(keys: &[ClusterKey]) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        let mut signer = None;
        for key in keys {
            let ca = derive_ca(key)?;
            roots.add(ca.der().clone())?;
            signer.get_or_insert(ca);
        }
        let signer = signer.ok_or(TlsError::NoKeys)?;

        let leaf_key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![SERVER_NAME.to_owned()])?;
        params.distinguished_name = common_name(SERVER_NAME.to_owned());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        set_validity(&mut params);
        let leaf = params.signed_by(&leaf_key, &signer)?;

        let fingerprints: Vec<String> = keys.iter().map(ClusterKey::fingerprint).collect();
        tracing::debug!(?fingerprints, "derived the cluster CAs, issued our certificate");
        Ok(Self {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            roots: Arc::new(roots),
            chain: vec![leaf.der().clone()],
            key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()),
            fingerprints,
        })
    }

    fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// A quinn server configuration that requires a client certificate from any of the
    /// cluster CAs and accepts the given ALPN protocols only.
    pub fn server_config(&self, alpns: &[&[u8]]) -> Result<quinn::ServerConfig, TlsError> {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), self.provider.clone())
                .build()
                .map_err(TlsError::Verifier)?;
        let mut tls = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.private_key())?;
        tls.alpn_protocols = alpns.iter().map(|alpn| alpn.to_vec()).collect();
        let crypto = QuicServerConfig::try_from(tls).map_err(TlsError::Quic)?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(transport_config());
        Ok(config)
    }

    /// A quinn client configuration that presents our certificate, trusts the cluster CAs
    /// and offers one ALPN protocol. Connect with [`SERVER_NAME`] as the server name. The RPC
    /// (a client of a node) keeps its connection under the client timeouts; gossip (a node
    /// dialling a node) under the nodes'.
    pub fn client_config(&self, alpn: &[u8]) -> Result<quinn::ClientConfig, TlsError> {
        let mut tls = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(self.chain.clone(), self.private_key())?;
        tls.alpn_protocols = vec![alpn.to_vec()];
        let crypto = QuicClientConfig::try_from(tls).map_err(TlsError::Quic)?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(if alpn == ALPN_RPC {
            transport_config_with(CLIENT_KEEP_ALIVE_INTERVAL, CLIENT_IDLE_TIMEOUT_MS)
        } else {
            transport_config()
        });
        Ok(config)
    }
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity").field("keys", &self.fingerprints).finish_non_exhaustive()
    }
}

/// The transport of a load generator's connections (`chorus bench`): a client's keep-alive
/// under the nodes' idle timeout. With the clients' 4 s, a few of 500 connections opened on a
/// 2-core machine under load went a whole 4 s without a packet handled, timed out, and failed
/// every request given to them (`bench_connects_five_hundred_clients`).
pub fn load_transport_config() -> Arc<quinn::TransportConfig> {
    transport_config_with(CLIENT_KEEP_ALIVE_INTERVAL, IDLE_TIMEOUT_MS)
}

/// The transport between nodes (a gossip dial, and the server side of every connection):
/// packets up to `UDP_PAYLOAD_MAX`, an unmeasured round trip taken as `INITIAL_RTT`. A client
/// keeps quinn's 1,452-byte ceiling: its requests are small, and 500 `chorus bench` clients
/// probing 6,550-byte packets at once would crowd the node's socket during their handshakes.
fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut transport = transport_with(KEEP_ALIVE_INTERVAL, IDLE_TIMEOUT_MS);
    transport.initial_rtt(INITIAL_RTT);
    let mut discovery = quinn::MtuDiscoveryConfig::default();
    discovery.upper_bound(UDP_PAYLOAD_MAX);
    transport.mtu_discovery_config(Some(discovery));
    Arc::new(transport)
}

fn transport_config_with(
    keep_alive: Duration,
    idle_timeout_ms: u32,
) -> Arc<quinn::TransportConfig> {
    Arc::new(transport_with(keep_alive, idle_timeout_ms))
}

fn transport_with(keep_alive: Duration, idle_timeout_ms: u32) -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(keep_alive));
    transport.max_idle_timeout(Some(quinn::VarInt::from_u32(idle_timeout_ms).into()));
    transport
}

/// How a connection ended, for the log: its callers say `Routine` at debug, `TimedOut` at
/// INFO and `Fault` at WARN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// As connections end when a node stops or restarts: closed by the application on either
    /// side (in its handshake QUIC says so with `APPLICATION_ERROR`, a TLS alert being 0x100 +
    /// the alert), or reset (a peer restarted on its address answers the old connection's
    /// packets so). The membership reports the peer at INFO.
    Routine,
    /// A peer that died, or a path that stopped carrying packets: not a fault, but worth
    /// seeing (a one-way blackhole shows nowhere else).
    TimedOut,
    /// Anything else: a TLS alert (another cluster key), a protocol violation.
    Fault,
}

/// How `error` ended its connection.
pub(crate) fn ending(error: &quinn::ConnectionError) -> Ending {
    use quinn::ConnectionError::{
        ApplicationClosed, ConnectionClosed, LocallyClosed, Reset, TimedOut,
    };
    match error {
        ApplicationClosed(_) | LocallyClosed | Reset => Ending::Routine,
        ConnectionClosed(close)
            if close.error_code == quinn::TransportErrorCode::APPLICATION_ERROR =>
        {
            Ending::Routine
        }
        TimedOut => Ending::TimedOut,
        _ => Ending::Fault,
    }
}

/// The TLS alert in a connection error, whichever side raised it: QUIC carries an alert
/// as the error code 0x100 + alert (RFC 9001, section 4.8).
pub(crate) fn tls_alert(error: &quinn::ConnectionError) -> Option<u8> {
    let code = match error {
        quinn::ConnectionError::TransportError(error) => error.code,
        quinn::ConnectionError::ConnectionClosed(close) => close.error_code,
        _ => return None,
    };
    u64::from(code).checked_sub(0x100).and_then(|alert| u8::try_from(alert).ok())
}

#[cfg(test)]
mod tests {
    use super::tls_alert;
    use super::*;
    use quinn::Endpoint;

    /// TLS alerts (RFC 8446, section 6) that the rejections below must carry.
    const UNKNOWN_CA: u8 = 48;
    const CERTIFICATE_REQUIRED: u8 = 116;
    const NO_APPLICATION_PROTOCOL: u8 = 120;
    const MESSAGE: &[u8] = b"hello, cluster";

    /// Runs an echo server, sends one message from a client and returns the echo, or the TLS
    /// alert that closed the connection. A stream error is traced back to the connection's
    /// close reason, because with TLS 1.3 client authentication the server may reject the
    /// client only after `connect` has succeeded. A hang fails the test at the timeout.
    async fn exchange(
        server: quinn::ServerConfig,
        client: quinn::ClientConfig,
    ) -> Result<Vec<u8>, Option<u8>> {
        let server = Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap();
        let address = server.local_addr().unwrap();
        tokio::spawn(async move {
            while let Some(incoming) = server.accept().await {
                tokio::spawn(async move {
                    let connection = incoming.await.ok()?;
                    let (mut send, mut recv) = connection.accept_bi().await.ok()?;
                    send.write_all(&recv.read_to_end(1024).await.ok()?).await.ok()?;
                    send.finish().ok()?;
                    // Dropping the connection would close it before the echo is delivered.
                    Some(connection.closed().await)
                });
            }
        });
        let endpoint = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let talk = async {
            let connecting = endpoint.connect_with(client, address, SERVER_NAME).unwrap();
            let connection = connecting.await.map_err(|error| tls_alert(&error))?;
            let echo = async {
                let (mut send, mut recv) = connection.open_bi().await.ok()?;
                send.write_all(MESSAGE).await.ok()?;
                send.finish().ok()?;
                recv.read_to_end(1024).await.ok()
            };
            match echo.await {
                Some(echoed) => Ok(echoed),
                None => Err(tls_alert(&connection.closed().await)),
            }
        };
        let outcome = tokio::time::timeout(Duration::from_secs(10), talk).await;
        outcome.expect("the exchange ends within the timeout, in success or failure")
    }

    async fn exchange_keys(
        server: &[ClusterKey],
        client: &[ClusterKey],
    ) -> Result<Vec<u8>, Option<u8>> {
        let server = TlsIdentity::new(server).unwrap().server_config(&[ALPN_GOSSIP, ALPN_RPC]);
        let client = TlsIdentity::new(client).unwrap().client_config(ALPN_RPC);
        exchange(server.unwrap(), client.unwrap()).await
    }

    #[tokio::test]
    async fn same_key_echoes_and_other_key_fails() {
        let keys = [ClusterKey::generate()];
        assert_eq!(exchange_keys(&keys, &keys).await.unwrap(), MESSAGE);
        let outcome = exchange_keys(&keys, &[ClusterKey::development()]).await;
        assert_eq!(outcome, Err(Some(UNKNOWN_CA)));
    }

    /// A rotation from A to B goes through [A], [A, B], [B, A], [B], one step at a time on
    /// every node. Nodes one step apart talk; nodes further apart do not, because each side
    /// checks the other: [B, A] signs with B, which a node holding only [A] does not trust.
    #[tokio::test]
    async fn rotation_works_one_step_at_a_time() {
        let (a, b) = (ClusterKey::generate(), ClusterKey::generate());
        let steps = [vec![a.clone()], vec![a.clone(), b.clone()], vec![b.clone(), a], vec![b]];
        for (i, server) in steps.iter().enumerate() {
            for (j, client) in steps.iter().enumerate() {
                let expected =
                    if i.abs_diff(j) <= 1 { Ok(MESSAGE.to_vec()) } else { Err(Some(UNKNOWN_CA)) };
                let outcome = exchange_keys(server, client).await;
                assert_eq!(outcome, expected, "server at step {i}, client at step {j}");
            }
        }
    }

    #[tokio::test]
    async fn client_without_certificate_fails() {
        let identity = TlsIdentity::new(&[ClusterKey::development()]).unwrap();
        let mut tls = rustls::ClientConfig::builder_with_provider(identity.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(identity.roots.clone())
            .with_no_client_auth();
        tls.alpn_protocols = vec![ALPN_RPC.to_vec()];
        let client = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
        let server = identity.server_config(&[ALPN_RPC]).unwrap();
        assert_eq!(exchange(server, client).await, Err(Some(CERTIFICATE_REQUIRED)));
    }

    #[tokio::test]
    async fn wrong_alpn_fails() {
        let identity = TlsIdentity::new(&[ClusterKey::generate()]).unwrap();
        let server = identity.server_config(&[ALPN_GOSSIP]).unwrap();
        let client = identity.client_config(ALPN_RPC).unwrap();
        assert_eq!(exchange(server, client).await, Err(Some(NO_APPLICATION_PROTOCOL)));
    }

    #[test]
    fn ca_is_deterministic_and_keys_are_required() {
        let key = ClusterKey::generate();
        let ca = derive_ca(&key).unwrap();
        assert_eq!(ca.der(), derive_ca(&key.clone()).unwrap().der());
        assert_ne!(ca.der(), derive_ca(&ClusterKey::generate()).unwrap().der());
        assert!(matches!(TlsIdentity::new(&[]), Err(TlsError::NoKeys)));
    }

    #[test]
    fn key_text_round_trips_and_debug_hides_it() {
        let keys = [ClusterKey::generate()];
        let (key, text) = (&keys[0], keys[0].to_string());
        let digits = text.strip_prefix(KEY_PREFIX).unwrap();
        assert!(digits.len() == 64 && digits.bytes().all(|b| b"0123456789abcdef".contains(&b)));
        assert_eq!(&format!("  {text}\n").parse::<ClusterKey>().unwrap(), key);
        assert_ne!(&ClusterKey::generate(), key);
        for debug in [format!("{key:?}"), format!("{:?}", TlsIdentity::new(&keys))] {
            assert!(
                !debug.contains(&digits[..16]) && debug.contains(&key.fingerprint()),
                "{debug}"
            );
        }
    }

    #[test]
    fn malformed_key_text_is_rejected() {
        use KeyParseError::*;
        let hex = "ab".repeat(32);
        let cases = [
            (hex.clone(), MissingPrefix),
            (format!("chorus-kex-{hex}"), MissingPrefix),
            (format!("chorus-key-{hex}ab"), WrongLength(66)),
            ("chorus-key-".to_owned(), WrongLength(0)),
            (format!("chorus-key-{}zz", &hex[2..]), NotHex(62)),
            (format!("chorus-key-+f{}", &hex[2..]), NotHex(0)),
        ];
        for (text, error) in cases {
            assert_eq!(text.parse::<ClusterKey>(), Err(error), "{text}");
        }
        assert!(MissingPrefix.to_string().contains(KEY_PREFIX));
    }

    /// The development key is part of the interface: nodes of different builds on one laptop
    /// must derive the same CA from it.
    #[test]
    fn development_key_is_fixed() {
        let key = ClusterKey::development();
        assert!(key.is_development() && !ClusterKey::generate().is_development());
        let text = "chorus-key-63686f7275732d646576656c6f706d656e742d6b65792d696e73656375726521";
        assert_eq!(key.to_string(), text);
        assert!(text.parse::<ClusterKey>().unwrap().is_development());
    }
    /// A peer's stop cut a handshake short with `APPLICATION_ERROR` (quinn sends no
    /// application close before the handshake ends): routine, where a TLS alert (another
    /// cluster key) is a fault and a timeout its own case.
    #[test]
    fn a_connection_ending_is_judged_by_how_it_closed() {
        use quinn::{ConnectionClose, ConnectionError, TransportErrorCode};
        let closed = |error_code| {
            ConnectionError::ConnectionClosed(ConnectionClose {
                error_code,
                frame_type: None,
                reason: Default::default(),
            })
        };
        assert_eq!(ending(&closed(TransportErrorCode::APPLICATION_ERROR)), Ending::Routine);
        assert_eq!(ending(&ConnectionError::Reset), Ending::Routine);
        assert_eq!(ending(&ConnectionError::LocallyClosed), Ending::Routine);
        assert_eq!(ending(&ConnectionError::TimedOut), Ending::TimedOut);
        assert_eq!(ending(&closed(TransportErrorCode::crypto(UNKNOWN_CA))), Ending::Fault);
        assert_eq!(ending(&closed(TransportErrorCode::PROTOCOL_VIOLATION)), Ending::Fault);
    }
}
