//! Client operations on a cluster's nodes: writes (puts and deletes) and reads, each recorded
//! by the checker.

use chorus_proto::{Key, Value, Write, WriteError, Written};

use super::Cluster;

impl<S> Cluster<S> {
    /// A client write (put or delete) at `slot`, handed to the node as it is.
    pub fn write(&mut self, slot: usize, write: Write) -> Result<Written, WriteError> {
        let local = self.local_now(slot);
        let Some(node) = self.slots[slot].node.as_mut() else {
            return Err(WriteError::ShuttingDown);
        };
        let seq = node.store().vector().base(node.id()) + 1;
        let (key, value, ttl_ms, timeout_ms) =
            (write.key.clone(), write.value.clone(), write.ttl_ms, write.timeout_ms);
        let result = node.write(local, write);
        if matches!(result, Err(WriteError::ClockOffset { .. } | WriteError::ClockUnchecked)) {
            self.reached.clock_refused += 1;
        }
        if let Ok(written) = &result {
            let expires = ttl_ms.filter(|_| value.is_some()).map(|ttl| local + ttl);
            let wait = written.wait.map(|id| (id, local + timeout_ms));
            self.trace.bytes(key.as_bytes());
            self.trace.word(written.stamp.hlc.as_u64());
            self.log(|| {
                format!("n{slot} write {key:?} = {value:?} ttl={ttl_ms:?} at {}", written.stamp)
            });
            let node = self.slots[slot].node.as_ref().expect("the node just wrote");
            self.checker.wrote(slot, node, key, value, seq, expires, written.stamp, wait);
        }
        self.drain(slot);
        result
    }

    /// A client read at `slot`, checked against the oracle.
    pub fn read(&mut self, slot: usize, key: &Key) -> Option<Value> {
        let local = self.local_now(slot);
        let node = self.slots[slot].node.as_ref()?;
        let value = if self.read_ignores_ttl {
            // Sabotage: the driver reads the register as it is, expired or not.
            node.store().entry(key).and_then(|entry| entry.register.val.clone())
        } else {
            node.get(key, local)
        };
        self.checker.read(slot, node, local, key, value.as_ref());
        self.trace.word(value.as_ref().map_or(0, |v| v.len() as u64 + 1));
        value
    }
}
