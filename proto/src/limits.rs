//! Every bound of the protocol, in one place, with the reason for it.
//!
//! Relations between the bounds are checked at compile time at the bottom of this file, so a
//! change that makes one limit contradict another does not build.

/// Longest key, in bytes. Keys are names (`app/flags/dark_mode`, `session/<id>`), not data;
/// 512 bytes holds any reasonable path while keeping per-entry overhead predictable.
pub const KEY_SIZE_MAX: usize = 512;

/// Largest value, in bytes. Application variables, cached objects and sessions fit in 1 MiB;
/// anything larger belongs in a blob store with its address in chorus. A node may lower it.
pub const VALUE_SIZE_MAX: usize = 1024 * 1024;

/// Upper bound on what one entry adds to an encoded message beyond its key and value bytes:
/// stamp, sequence number, expiry, length prefixes and option tags, all varint-encoded at
/// their widest. Used to size delta pages without encoding twice.
pub const ENTRY_OVERHEAD_MAX: usize = 64;

/// Upper bound on the fixed part of any message (kind tag, sender, group headers of one
/// page). Delta pages reserve it before adding entries.
pub const MESSAGE_OVERHEAD_MAX: usize = 16 * 1024;

/// Largest encoded message, gossip or RPC. Checked before a receive buffer is allocated.
/// It must hold one entry of the largest key and value, so that any write can travel.
pub const MESSAGE_SIZE_MAX: usize =
    KEY_SIZE_MAX + VALUE_SIZE_MAX + ENTRY_OVERHEAD_MAX + MESSAGE_OVERHEAD_MAX;

/// Target size of an anti-entropy delta page: large enough to amortise headers, small enough
/// that a catch-up interleaves with other traffic. A single oversized entry still goes alone.
pub const DELTA_PAGE_SIZE_TARGET: usize = 256 * 1024;

/// Largest wall-clock reading an `Hlc` can carry: 48 bits of milliseconds (year 10889).
pub const WALL_MS_MAX: u64 = (1 << 48) - 1;

/// How far ahead of the local wall clock a remote stamp may be before it is refused. One node
/// with a fast clock must not win every conflict for hours; 500 ms tolerates NTP-synchronised
/// machines while bounding the advantage a bad clock can buy. Configurable per node.
pub const CLOCK_SKEW_MS_MAX: u64 = 500;

/// Most out-of-order dots a version vector remembers above its contiguous base. They only
/// save re-sending; forgetting them is safe, so the set is capped rather than grown.
pub const DOT_CLOUD_SIZE_MAX: usize = 4096;

/// Interval between anti-entropy rounds (one push-pull exchange with one peer). Heartbeats
/// ride these rounds, so it also sets how fast a failure is noticed (Dead after about 20 to 60
/// intervals of silence, since heartbeats arrive through gossip every 1 to 2 intervals).
pub const GOSSIP_INTERVAL_MS: u64 = 500;

/// Milliseconds a tombstone or expired entry is kept after it became causally stable, as a
/// margin for messages still in flight. Writes older than this are not expected in transit.
pub const TOMBSTONE_GRACE_MS: u64 = 60_000;

/// Longest TTL a write may carry (one year): expiry stays within the 48-bit clock and a typo
/// in a duration cannot create an entry that effectively never expires by accident.
pub const TTL_MS_MAX: u64 = 365 * 24 * 3_600 * 1_000;

/// Longest advertised address, in bytes (a socket address or a DNS name with port).
pub const ADDR_SIZE_MAX: usize = 256;

/// Longest member name, in bytes: a host or instance name for humans.
pub const NAME_SIZE_MAX: usize = 128;

/// Most members one node tracks. Digests carry one heartbeat per member, so this bounds a
/// digest at about 40 KiB; chorus serves application clusters, not planet-scale overlays.
pub const MEMBERS_MAX: usize = 4096;

/// Identities remembered after removal, so a fenced-out node cannot come back with stale
/// state; the oldest is forgotten first.
pub const REMOVED_MAX: usize = 4096;

/// Heartbeat inter-arrival samples kept per member for the phi-accrual failure detector.
pub const PHI_WINDOW_SIZE: usize = 64;

/// Longest gap between two heartbeat increases of a member, in gossip intervals, that the
/// failure detector samples. A longer gap is an outage or a partition, not the member's
/// rhythm: sampling it inflates the mean, and the detector then takes minutes to notice the
/// next failure (chorus-sim saw a crashed node still alive to a peer a minute later).
/// Cassandra's detector drops such gaps too.
pub const PHI_GAP_INTERVALS_MAX: u64 = 4;

/// Children of each node in the eager-push tree of an origin. Wider trees are shallower
/// (fewer hops, lower latency) at the cost of a larger burst at each interior node.
pub const TREE_FANOUT: usize = 6;

/// How long eager pushes are batched per peer. Zero sends at once; a few milliseconds lets a
/// burst of writes share one message.
pub const PUSH_BATCH_MS: u64 = 2;

/// Most bytes of eager push waiting for one peer; beyond it pushes are dropped and counted,
/// and anti-entropy delivers them instead. Keeps one slow peer from growing memory.
pub const PUSH_QUEUE_SIZE_MAX: usize = 4 * 1024 * 1024;

/// Delta pages sent for one anti-entropy round; a longer catch-up continues next round.
pub const SYNC_PAGES_MAX: usize = 16;

/// Write waits pending at once; a further waited write is refused rather than tracked.
pub const WAITS_MAX: usize = 16 * 1024;

/// Events queued for the driver before the oldest are dropped (counted).
pub const EVENTS_MAX: usize = 64 * 1024;

const _: () = assert!(KEY_SIZE_MAX > 0 && KEY_SIZE_MAX <= u16::MAX as usize);
const _: () = assert!(MESSAGE_SIZE_MAX <= u32::MAX as usize, "frames carry a u32 length");
const _: () = assert!(DELTA_PAGE_SIZE_TARGET <= MESSAGE_SIZE_MAX - MESSAGE_OVERHEAD_MAX);
const _: () = assert!(CLOCK_SKEW_MS_MAX < GOSSIP_INTERVAL_MS * 60);
const _: () = assert!(TOMBSTONE_GRACE_MS >= 10 * GOSSIP_INTERVAL_MS);
const _: () = assert!(TTL_MS_MAX < WALL_MS_MAX / 2);
const _: () = assert!(MEMBERS_MAX * 40 < MESSAGE_SIZE_MAX, "a full digest fits a message");
const _: () = assert!(TREE_FANOUT >= 2);
const _: () = assert!(PUSH_QUEUE_SIZE_MAX >= MESSAGE_SIZE_MAX);
