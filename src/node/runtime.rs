//! The runtime `chorus node` runs a node on.

/// A builder of the runtime `chorus node` runs a node on: one thread, where its Redis and HTTP
/// clients, its gossip and its timers take turns, as Redis's one event loop does; disk writes go
/// to the blocking pool (ARCHITECTURE.md, "One thread per node"). A runtime of several workers
/// woke another thread for each batch of pushes and each peer's acknowledgements, and a thread
/// more served Redis. A debug build given the test-only fault `node-multi-thread`
/// ([`crate::frontend::TEST_FAULT_ENV`]) builds a worker per CPU instead, as an embedder's
/// runtime has, so that the black-box tests reach the Redis front end's own thread too.
pub fn node_runtime() -> tokio::runtime::Builder {
    if crate::frontend::test_fault("node-multi-thread") {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    }
}
