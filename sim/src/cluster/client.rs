//! Client operations on a cluster's nodes: puts, deletes and reads, each recorded by the
//! checker.

use chorus_proto::{Key, Value, WaitLevel, WriteError, Written};

use super::Cluster;

impl<S> Cluster<S> {
    /// A client put at `slot`.
    pub fn put(
        &mut self,
        slot: usize,
        key: Key,
        value: Value,
        ttl_ms: Option<u64>,
        wait: WaitLevel,
        timeout_ms: u64,
    ) -> Result<Written, WriteError> {
        self.write(slot, key, Some(value), ttl_ms, wait, timeout_ms)
    }

    /// A client delete at `slot`.
    pub fn delete(
        &mut self,
        slot: usize,
        key: Key,
        wait: WaitLevel,
        timeout_ms: u64,
    ) -> Result<Written, WriteError> {
        self.write(slot, key, None, None, wait, timeout_ms)
    }

    fn write(
        &mut self,
        slot: usize,
        key: Key,
        value: Option<Value>,
        ttl_ms: Option<u64>,
        wait: WaitLevel,
        timeout_ms: u64,
    ) -> Result<Written, WriteError> {
        let local = self.local_now(slot);
        let Some(node) = self.slots[slot].node.as_mut() else {
            return Err(WriteError::ShuttingDown);
        };
        let seq = node.store().vector().base(node.id()) + 1;
        let result = match &value {
            Some(value) => node.put(local, key.clone(), value.clone(), ttl_ms, wait, timeout_ms),
            None => node.delete(local, key.clone(), wait, timeout_ms),
        };
        if let Ok(written) = &result {
            let expires = ttl_ms.map(|ttl| local + ttl);
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
            node.get(key, local).cloned()
        };
        self.checker.read(slot, node, local, key, value.as_ref());
        self.trace.word(value.as_ref().map_or(0, |v| v.len() as u64 + 1));
        value
    }
}
