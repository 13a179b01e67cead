//! How a connection's replies become bytes: each checked against the connection's output
//! limit before it is encoded, a long command's reply encoded a part at a time, the Redis
//! thread yielding between parts, and a subscriber's changes turned into notifications.

use chorus_proto::resp::Reply;
use chorus_proto::rpc::Change;
use tokio::sync::broadcast;

use super::command::REDIS_OUTPUT_MAX;
use super::connection::{Connection, OUTPUT_FLUSH_SIZE};
use super::lock;
use crate::node::Live;

/// Elements of a long command's reply encoded between two yields of the Redis thread (about
/// 100 KB of output for short keys).
pub const ENCODE_PART: usize = 4096;

/// Hands `items` to `encode` [`ENCODE_PART`] at a time, yielding between parts.
async fn in_parts<T>(items: Vec<T>, mut encode: impl FnMut(T)) {
    let mut items = items.into_iter();
    loop {
        let mut part = items.by_ref().take(ENCODE_PART).peekable();
        if part.peek().is_none() {
            return;
        }
        part.for_each(&mut encode);
        tokio::task::yield_now().await;
    }
}

impl Connection {
    /// Encodes replies into `output`, each if it [`fits`](Connection::fits).
    pub(super) fn encode(&mut self, replies: Vec<Reply>, output: &mut Vec<u8>) {
        for reply in replies {
            if !self.fits(&reply, output) {
                return;
            }
            reply.encode(self.resp3, output);
        }
    }

    /// Whether `reply` fits in `output` under [`REDIS_OUTPUT_MAX`]; when not, the client gets
    /// an error instead and the connection is closed (a 3 KB `MGET` of one 1 MiB value
    /// repeated must not make the node allocate gigabytes).
    pub(super) fn fits(&mut self, reply: &Reply, output: &mut Vec<u8>) -> bool {
        if output.len().saturating_add(reply.encoded_len()) <= REDIS_OUTPUT_MAX {
            return true;
        }
        let why = format!("reply above this connection's output limit of {REDIS_OUTPUT_MAX} bytes");
        Reply::error(why).encode(self.resp3, output);
        self.closing = true;
        false
    }

    /// Encodes a long command's reply (a database walk's, up to a million keys for `KEYS`, or
    /// a whole-key command's on a large hash), yielding the Redis thread after every
    /// [`ENCODE_PART`] elements (and dropping them as it goes), so that its other clients are
    /// served meanwhile.
    pub(super) async fn encode_long(&mut self, reply: Reply, output: &mut Vec<u8>) {
        let count = match &reply {
            Reply::Array(items) | Reply::Set(items) | Reply::Push(items) => items.len(),
            Reply::Map(pairs) => pairs.len(),
            _ => 0,
        };
        if count <= ENCODE_PART {
            return self.encode(vec![reply], output);
        }
        if !self.fits(&reply, output) {
            return;
        }
        let resp3 = self.resp3;
        reply.encode_head(resp3, output);
        match reply {
            Reply::Array(items) | Reply::Set(items) | Reply::Push(items) => {
                in_parts(items, |item| item.encode(resp3, output)).await
            }
            Reply::Map(pairs) => {
                in_parts(pairs, |(key, value)| {
                    key.encode(resp3, output);
                    value.encode(resp3, output);
                })
                .await
            }
            _ => {}
        }
    }
}

/// Changes a subscriber takes from the change stream in one turn of the Redis thread: enough
/// to keep up with pipelined writers (taken one per turn, it fell behind and skipped most).
const NOTIFY_DRAIN_MAX: usize = 1024;

impl Connection {
    /// Turns `first` and the changes already recorded after it into notifications in
    /// `output`, up to `OUTPUT_FLUSH_SIZE` of them; after `NOTIFY_DRAIN_MAX` changes (which may
    /// write nothing, if this connection is not subscribed to them) the thread's other clients
    /// run first.
    pub(super) async fn notify_all(
        &mut self,
        first: Result<Change, broadcast::error::RecvError>,
        output: &mut Vec<u8>,
    ) {
        self.notify(first, output);
        let mut drained = 0;
        while output.len() < OUTPUT_FLUSH_SIZE && drained < NOTIFY_DRAIN_MAX {
            let Some(change) = self.changes.as_mut().and_then(Live::try_recv) else { break };
            self.notify(change, output);
            drained += 1;
        }
        if drained == NOTIFY_DRAIN_MAX {
            super::others_first().await;
        }
    }

    /// Turns a change into the notifications this connection subscribed to.
    fn notify(
        &mut self,
        change: Result<Change, broadcast::error::RecvError>,
        output: &mut Vec<u8>,
    ) {
        match change {
            Ok(change) => {
                let flags = lock(&self.server.notify).clone();
                for message in self.subscriptions.messages(&change, &flags) {
                    message.encode(self.resp3, output);
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                // Notifications are at most once, as in Redis: a subscriber that fell behind
                // the node's change stream (a burst of writes, or a slow reader) skips what it
                // missed, counted, rather than being disconnected or buffered without bound.
                self.server.driver.count_by("redis_notifications_", "missed", missed);
            }
            Err(broadcast::error::RecvError::Closed) => self.closing = true,
        }
    }
}
