//! The runtime `chorus node` runs a node on.

/// A builder of the runtime `chorus node --threads N` runs a node on. One thread (the
/// default): its Redis and HTTP clients, its gossip and its timers take turns there, as Redis's
/// one event loop does, where a runtime of several workers woke another thread for each batch
/// of pushes and each peer's acknowledgements, and a thread more served Redis (ARCHITECTURE.md,
/// "One thread per node"). More: that many workers, the Redis front end on a thread of its own
/// ([`crate::NodeOptions::redis`]), for a heavy QUIC RPC load. Disk writes go to the blocking
/// pool either way. `threads` of 0 is taken as 1.
pub fn node_runtime(threads: usize) -> tokio::runtime::Builder {
    if threads > 1 {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    } else {
        tokio::runtime::Builder::new_current_thread()
    }
}
