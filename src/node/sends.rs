//! The node's outboxes go to the transport in the order its lock made them.
//!
//! Every call into the node takes what it transmitted out of the lock and sends it after
//! letting go (encoding is too heavy to do under the lock). In a node embedded in a
//! multi-thread runtime, callers run on several threads: the Redis front end's (a write flushes
//! its pushes) and the runtime's workers (timers, gossip, RPC, HTTP); `chorus node` runs on one
//! thread unless given `--threads`, and there the queue holds one outbox at a time. Sent by
//! each caller on its own, a later outbox could pass an earlier one on some peers' lanes: the
//! caller sending the earlier one was preempted, or just slower, after queueing it for one
//! peer, and another caller's whole outbox went meanwhile. The peer then received a writer's
//! pushes out of order; each write that arrived ahead of a gap took the slow path into the
//! store's dot and expiry indexes, and the gap took the writer out of the peer's streams. On
//! three nodes pinned to one core, the replica whose lane was served last took 10–16% more CPU
//! than the other (ARCHITECTURE.md, "Data flow in a node").
//!
//! [`InOrder`] is a queue of outboxes, filled under the node's lock and drained by one
//! caller at a time: whoever finds nobody sending sends until the queue is empty, outboxes
//! queued meanwhile by other callers included. No caller waits for another while holding
//! the node's lock: the queue's own lock is held only to push or pop.
//!
//! The price: encoding is now done by one caller at a time, where each caller encoded its
//! own outbox in parallel, and a sender's turn lasts until the queue is empty, so a heartbeat
//! may wait behind the encoding of a catch-up page (about `DELTA_PAGE_SIZE_TARGET`, 256 KiB)
//! and a Redis thread that is the sender serves no connection meanwhile (on one thread, the
//! whole node waits for that encoding, as it did before this queue). Each outbox
//! is queued by a call that held the node's lock, so the queue grows no faster than calls
//! into the node come; past `SEND_QUEUE_MAX` outboxes, a new one is dropped and counted, as
//! a message that finds its peer's lane full is (anti-entropy repairs what it carried).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

/// Outboxes queued for sending before a new one is dropped. A queue holds about as many as
/// there are callers at once (a few threads); only a sender far slower than the calls into
/// the node (encoding one large page after another) fills it. Each outbox is bounded by the
/// protocol: per-peer push outboxes by `PUSH_QUEUE_SIZE_MAX`, pages by their size target.
pub const SEND_QUEUE_MAX: usize = 256;

/// Batches in the order they were queued, and whether a caller is sending them.
#[derive(Debug)]
pub(super) struct InOrder<T> {
    queue: Mutex<Queue<T>>,
}

#[derive(Debug)]
struct Queue<T> {
    batches: VecDeque<T>,
    sending: bool,
}

impl<T> Default for InOrder<T> {
    fn default() -> Self {
        InOrder { queue: Mutex::new(Queue { batches: VecDeque::new(), sending: false }) }
    }
}

impl<T> InOrder<T> {
    /// Queues `batch`; call it while holding the lock whose order the batches must keep.
    /// Returns whether the caller is now the sender: it must call [`InOrder::send`] once it
    /// has let go of that lock. A full queue hands the batch back (a caller is sending then).
    pub(super) fn push(&self, batch: T) -> Result<bool, T> {
        let mut queue = self.lock();
        if queue.batches.len() >= SEND_QUEUE_MAX {
            return Err(batch);
        }
        queue.batches.push_back(batch);
        Ok(!std::mem::replace(&mut queue.sending, true))
    }

    /// Hands every queued batch to `send`, oldest first, until none is left (batches queued
    /// meanwhile included), then stops being the sender. Only the caller `push` made the
    /// sender calls it.
    pub(super) fn send(&self, mut send: impl FnMut(T)) {
        // A panic inside `send` must not leave the queue with a sender that is gone.
        let mut turn = Turn { queue: self, ended: false };
        while let Some(batch) = self.next() {
            send(batch);
        }
        turn.ended = true;
    }

    /// The oldest queued batch; none when the queue is empty, and then nobody is sending.
    fn next(&self) -> Option<T> {
        let mut queue = self.lock();
        let batch = queue.batches.pop_front();
        if batch.is_none() {
            queue.sending = false;
        }
        batch
    }

    fn lock(&self) -> MutexGuard<'_, Queue<T>> {
        // A poisoned lock only means a panic elsewhere while holding it; the queue is valid.
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A sender's turn: ended by `next` finding the queue empty, or, when `send` unwinds before
/// that, by this guard (the batches still queued go with the next caller's turn).
struct Turn<'a, T> {
    queue: &'a InOrder<T>,
    ended: bool,
}

impl<T> Drop for Turn<'_, T> {
    fn drop(&mut self) {
        if !self.ended {
            self.queue.lock().sending = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn the_first_caller_sends_what_others_queue_meanwhile_in_order() {
        let sends = InOrder::default();
        assert_eq!(sends.push(1), Ok(true));
        assert_eq!(sends.push(2), Ok(false), "a second caller must leave the sending to the first");
        let mut sent = Vec::new();
        sends.send(|batch| {
            sent.push(batch);
            if batch == 1 {
                assert_eq!(sends.push(3), Ok(false), "nobody else sends while the sender sends");
            }
        });
        assert_eq!(sent, [1, 2, 3]);
        assert_eq!(sends.push(4), Ok(true), "the turn ends once the queue is empty");
    }

    #[test]
    fn a_panicking_sender_gives_up_its_turn() {
        let sends = Arc::new(InOrder::default());
        assert_eq!(sends.push(1), Ok(true));
        let sender = sends.clone();
        let panicked = std::thread::spawn(move || sender.send(|_| panic!("test"))).join();
        assert!(panicked.is_err());
        assert_eq!(sends.push(2), Ok(true), "the next caller sends");
    }

    #[test]
    fn a_full_queue_hands_a_batch_back_and_takes_one_again_once_sent() {
        let sends = InOrder::default();
        assert_eq!(sends.push(0), Ok(true));
        (1..SEND_QUEUE_MAX).for_each(|n| assert_eq!(sends.push(n), Ok(false)));
        assert_eq!(sends.push(SEND_QUEUE_MAX), Err(SEND_QUEUE_MAX));
        let mut sent = 0;
        sends.send(|_| sent += 1);
        assert_eq!(sent, SEND_QUEUE_MAX);
        assert_eq!(sends.push(0), Ok(true));
    }

    /// Threads queue numbers under one lock, as callers of the node do, and send them on
    /// their own: every number goes once, in the lock's order.
    #[test]
    fn threads_send_in_the_order_of_the_lock() {
        const THREADS: usize = 4;
        const EACH: usize = 5_000;
        let sends = Arc::new(InOrder::default());
        let node = Arc::new(Mutex::new(0_usize));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let (sends, node, sent) = (sends.clone(), node.clone(), sent.clone());
                std::thread::spawn(move || {
                    for _ in 0..EACH {
                        let mut next = node.lock().unwrap();
                        *next += 1;
                        // A full queue (its sender preempted while the others queued):
                        // wait for room under the lock, so that the order stays the lock's.
                        let sender = loop {
                            match sends.push(*next) {
                                Ok(sender) => break sender,
                                Err(_) => std::thread::yield_now(),
                            }
                        };
                        drop(next);
                        if sender {
                            sends.send(|batch| sent.lock().unwrap().push(batch));
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let sent = sent.lock().unwrap();
        assert_eq!(*sent, (1..=THREADS * EACH).collect::<Vec<_>>());
    }
}
