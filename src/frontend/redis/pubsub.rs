//! Keyspace notifications: `SUBSCRIBE`, `PSUBSCRIBE`, `UNSUBSCRIBE`, `PUNSUBSCRIBE`.
//!
//! They are fed by the node's watch stream, so a change made on any node (replicated here)
//! reaches the subscribers of every node: `__keyspace@<db>__:<key>` carries the event
//! (`set`, `del`, `expired`, `hset`, `hdel`), `__keyevent@<db>__:<event>` carries the key.
//! Which are published follows `notify-keyspace-events` (`CONFIG SET`), on by default
//! (`KEA`-like), per node. `PUBLISH` between applications is not offered: chorus replicates
//! state, not messages.

use std::collections::BTreeSet;

use chorus_proto::keyspace::{self, Name};
use chorus_proto::resp::Reply;
use chorus_proto::rpc::{Change, ChangeKind};

use super::glob;

/// Most channels and patterns one connection subscribes to.
pub const REDIS_SUBSCRIPTIONS_MAX: usize = 1024;

/// Longest channel name or pattern: a key-space channel of the longest key, with room.
pub const REDIS_CHANNEL_SIZE_MAX: usize = 1024;

/// The channels and patterns one connection is subscribed to.
#[derive(Debug, Default)]
pub struct Subscriptions {
    /// Exact channel names.
    pub channels: BTreeSet<Vec<u8>>,
    /// Glob patterns.
    pub patterns: BTreeSet<Vec<u8>>,
}

impl Subscriptions {
    /// How many channels and patterns, together.
    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Subscribes to each channel (or pattern), with one confirmation each; refuses names
    /// above [`REDIS_CHANNEL_SIZE_MAX`] and more than [`REDIS_SUBSCRIPTIONS_MAX`] in all (every
    /// change is matched against every pattern).
    pub fn subscribe(&mut self, pattern: bool, names: &[Vec<u8>]) -> Vec<Reply> {
        let kind = if pattern { "psubscribe" } else { "subscribe" };
        if names.iter().any(|name| name.len() > REDIS_CHANNEL_SIZE_MAX) {
            return vec![Reply::error(format!(
                "channel names and patterns are at most {REDIS_CHANNEL_SIZE_MAX} bytes"
            ))];
        }
        if self.count() + names.len() > REDIS_SUBSCRIPTIONS_MAX {
            return vec![Reply::error(format!(
                "a connection subscribes to at most {REDIS_SUBSCRIPTIONS_MAX} channels and patterns"
            ))];
        }
        names
            .iter()
            .map(|name| {
                let set = if pattern { &mut self.patterns } else { &mut self.channels };
                set.insert(name.clone());
                confirmation(kind, Some(name.clone()), self.count())
            })
            .collect()
    }

    /// Unsubscribes from each (or, with none named, every) channel or pattern.
    pub fn unsubscribe(&mut self, pattern: bool, names: &[Vec<u8>]) -> Vec<Reply> {
        let kind = if pattern { "punsubscribe" } else { "unsubscribe" };
        let set = if pattern { &self.patterns } else { &self.channels };
        let names: Vec<Vec<u8>> =
            if names.is_empty() { set.iter().cloned().collect() } else { names.to_vec() };
        if names.is_empty() {
            return vec![confirmation(kind, None, self.count())];
        }
        names
            .into_iter()
            .map(|name| {
                let set = if pattern { &mut self.patterns } else { &mut self.channels };
                set.remove(&name);
                confirmation(kind, Some(name), self.count())
            })
            .collect()
    }

    /// The messages a change publishes to this connection.
    pub fn messages(&self, change: &Change, flags: &NotifyFlags) -> Vec<Reply> {
        let mut messages = Vec::new();
        for (channel, payload) in notifications(change, flags) {
            if self.channels.contains(&channel) {
                messages.push(Reply::Push(vec![
                    Reply::text("message"),
                    Reply::Bulk(channel.clone()),
                    Reply::Bulk(payload.clone()),
                ]));
            }
            for pattern in self.patterns.iter().filter(|pattern| glob::matches(pattern, &channel)) {
                messages.push(Reply::Push(vec![
                    Reply::text("pmessage"),
                    Reply::Bulk(pattern.clone()),
                    Reply::Bulk(channel.clone()),
                    Reply::Bulk(payload.clone()),
                ]));
            }
        }
        messages
    }
}

fn confirmation(kind: &str, name: Option<Vec<u8>>, count: usize) -> Reply {
    let name = name.map_or(Reply::Null, Reply::Bulk);
    Reply::Push(vec![Reply::text(kind), name, Reply::Integer(count as i64)])
}

/// Which notifications a node publishes (`notify-keyspace-events`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyFlags {
    /// The setting as given (`K`, `E`, `A`, `g`, `$`, `h`, `x`...).
    pub text: String,
}

impl Default for NotifyFlags {
    fn default() -> Self {
        NotifyFlags { text: "KEA".into() }
    }
}

impl NotifyFlags {
    fn has(&self, flag: char) -> bool {
        self.text.contains(flag)
    }

    /// Whether an event of `class` (`g` generic, `$` string, `h` hash, `x` expired) is on.
    fn publishes(&self, class: char) -> bool {
        self.has(class) || (self.has('A') && "g$hx".contains(class))
    }
}

/// The (channel, payload) pairs a change publishes under `flags`.
fn notifications(change: &Change, flags: &NotifyFlags) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Some(name) = keyspace::parse(change.key.as_bytes()) else { return Vec::new() };
    let (db, key, hash) = match name {
        Name::String { db, key } => (db, key, false),
        Name::HashField { db, key, .. } => (db, key, true),
    };
    let (event, class) = match (change.kind, hash) {
        (ChangeKind::Put, false) => ("set", '$'),
        (ChangeKind::Put, true) => ("hset", 'h'),
        (ChangeKind::Delete, false) => ("del", 'g'),
        (ChangeKind::Delete, true) => ("hdel", 'h'),
        (ChangeKind::Expire, _) => ("expired", 'x'),
    };
    if !flags.publishes(class) {
        return Vec::new();
    }
    let mut published = Vec::new();
    if flags.has('K') {
        published.push((
            [format!("__keyspace@{db}__:").as_bytes(), &key].concat(),
            event.as_bytes().to_vec(),
        ));
    }
    if flags.has('E') {
        published.push((format!("__keyevent@{db}__:{event}").into_bytes(), key));
    }
    published
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_proto::Key;

    fn change(kind: ChangeKind, key: &[u8]) -> Change {
        Change { cursor: 1, kind, key: Key::new(key).expect("valid"), value: None, stamp: None }
    }

    #[test]
    fn a_change_publishes_keyspace_and_keyevent_messages() {
        let flags = NotifyFlags::default();
        let published = notifications(&change(ChangeKind::Put, b"k"), &flags);
        assert_eq!(
            published,
            vec![
                (b"__keyspace@0__:k".to_vec(), b"set".to_vec()),
                (b"__keyevent@0__:set".to_vec(), b"k".to_vec()),
            ]
        );
        let field = keyspace::hash_field(3, b"sess", b"attr").expect("valid");
        let published = notifications(&change(ChangeKind::Expire, field.as_bytes()), &flags);
        assert_eq!(published[1], (b"__keyevent@3__:expired".to_vec(), b"sess".to_vec()));
    }

    #[test]
    fn flags_choose_what_is_published() {
        let only_expired = NotifyFlags { text: "Ex".into() };
        assert!(notifications(&change(ChangeKind::Put, b"k"), &only_expired).is_empty());
        assert_eq!(notifications(&change(ChangeKind::Expire, b"k"), &only_expired).len(), 1);
        assert!(
            notifications(&change(ChangeKind::Put, b"k"), &NotifyFlags { text: String::new() })
                .is_empty()
        );
    }

    #[test]
    fn subscribers_get_what_their_channels_and_patterns_match() {
        let mut subscriptions = Subscriptions::default();
        subscriptions.subscribe(true, &[b"__keyevent@0__:*".to_vec()]);
        subscriptions.subscribe(false, &[b"__keyspace@0__:k".to_vec()]);
        let messages =
            subscriptions.messages(&change(ChangeKind::Delete, b"k"), &NotifyFlags::default());
        assert_eq!(messages.len(), 2);
        assert_eq!(subscriptions.unsubscribe(false, &[]).len(), 1);
        assert_eq!(subscriptions.count(), 1);
    }
}
