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

/// Most entries one listing page visits (`Store::list_page`): live, tombstones and expired
/// alike. A prefix may hold any number of tombstones between two live keys until collection;
/// each page of a walk (a Redis `SCAN`, `KEYS` or `DBSIZE`, an HTTP or RPC list) takes the
/// node's lock once, so this bounds one hold (about a tenth of a millisecond of tombstones).
pub const LIST_VISIT_MAX: usize = 4096;

/// Largest wall-clock reading an `Hlc` can carry: 48 bits of milliseconds (year 10889).
pub const WALL_MS_MAX: u64 = (1 << 48) - 1;

/// How far ahead of the local wall clock a remote stamp may be before it is refused. One node
/// with a fast clock must not win every conflict for hours; 500 ms tolerates NTP-synchronised
/// machines while bounding the advantage a bad clock can buy. Configurable per node.
pub const CLOCK_SKEW_MS_MAX: u64 = 500;

/// Longest a node holds a peer's clock reading before echoing it back (DESIGN 3, the clock
/// self-check): the echo's hold time is measured on the echoing node's clock, so a clock that
/// drifts 1% adds 1% of the hold to the estimate's error. Four gossip intervals (2 s) keep
/// it under 20 ms at that drift; older readings are not echoed.
pub const CLOCK_ECHO_HOLD_MS_MAX: u64 = 4 * GOSSIP_INTERVAL_MS;

/// Peers whose agreement settles the clock self-check's verdict in a large cluster, where
/// measuring half of the members takes one round each: this many peers within the bound
/// (and none of the verdicts below) make a node `Within`, this many beyond it on one side,
/// and most of those measured, make it `Off`. In clusters of up to six nodes, half the
/// live peers decide.
pub const CLOCK_QUORUM: usize = 3;

/// Longest round trip a clock offset estimate is taken from: an estimate is only known to
/// within half its round trip, and one slower than this says too little to act on.
pub const CLOCK_RTT_MS_MAX: u64 = 5_000;

/// Most out-of-order dots a version vector remembers above its contiguous base. They only
/// save re-sending; forgetting them is safe, so the set is capped rather than grown.
pub const DOT_CLOUD_SIZE_MAX: usize = 4096;

/// Interval between anti-entropy rounds (one push-pull exchange with one peer). Heartbeats
/// ride these rounds, so it also sets how fast a failure is noticed: `Dead` after about 20 to
/// 56 intervals of silence (10 to 28 s, see [`PHI_DEAD`]).
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

/// Phi at which a member becomes `Suspect`: the chance that a heartbeat is still this late
/// by accident is 10^-3. Suspicion costs little (a suspect still gets pushes and is still
/// waited for), so it comes early, after about 7 mean heartbeat gaps of silence.
pub const PHI_SUSPECT: f64 = 3.0;

/// Phi at which a member becomes `Dead`: 10^-6, about 14 mean heartbeat gaps (phi times
/// ln 10) of silence. Heartbeats reach a node through gossip every 1 to 2 intervals, and the
/// detector samples gaps of at most `PHI_GAP_INTERVALS_MAX` intervals, so `Dead` comes after
/// about 10 to 28 s at the default interval (measured in chorus-sim; about 20 s on 5 nodes).
/// A dead member leaves push trees and `--wait all`, so declaring it too early would cost
/// pushes to a live node; too late, and waited writes wait on a crashed one.
pub const PHI_DEAD: f64 = 6.0;

/// How long a `Dead` member stays listed before it is removed (5 minutes). Removal lets the
/// others collect tombstones it never saw, after which its state is fenced out (`horizon.rs`),
/// so it must be long enough that a partition or a slow restart is not mistaken for a
/// departure; a dead member holds collection back until then.
pub const DEAD_REMOVE_MS: u64 = 5 * 60_000;

/// How long a `Left` member stays listed before it is removed (1 minute). The member announced
/// its departure and handed its writes off, so nothing is lost by forgetting it sooner than a
/// dead one; the delay lets the `Left` state spread by gossip to every node first.
pub const LEFT_REMOVE_MS: u64 = 60_000;

/// Children of each node in the eager-push tree of an origin. Wider trees are shallower
/// (fewer hops, lower latency) at the cost of a larger burst at each interior node.
pub const TREE_FANOUT: usize = 6;

/// How long eager pushes are batched per peer. Zero sends at once; a few milliseconds lets a
/// burst of writes share one message.
pub const PUSH_BATCH_MS: u64 = 2;

/// How long after a push last advanced a node's base for a writer (contiguously, nothing seen
/// out of order above it) the node still tells its anti-entropy peers that it receives that
/// writer as a stream of pushes: they leave the writer's newer writes to the pushes on their
/// way, instead of sending them a second time in a delta page. A push lost at the tail of a
/// stream is sent by the first round after this much quiet.
pub const PUSH_STREAM_MS: u64 = 50;

/// Most runs of left-out writes one pushed write carries (`message::Replaced`): a write
/// replacing queued writes of its key takes their sequence numbers along, as runs, while they
/// fit; past this (the key's writes scattered among many others) the older write is sent.
pub const REPLACED_SPANS_MAX: usize = 16;

/// Most bytes of eager push waiting for one peer; beyond it pushes are dropped and counted,
/// and anti-entropy delivers them instead. Keeps one slow peer from growing memory.
pub const PUSH_QUEUE_SIZE_MAX: usize = 4 * 1024 * 1024;

/// Delta pages sent for one anti-entropy round; a longer catch-up continues next round.
pub const SYNC_PAGES_MAX: usize = 16;

/// Write waits pending at once; a further waited write is refused rather than tracked.
pub const WAITS_MAX: usize = 16 * 1024;

/// Longest a write may wait for other nodes (60 s); a longer timeout is refused. A wait
/// holds one of the `WAITS_MAX` slots until it ends, so without a bound a client could hold
/// them all for hours; and nothing is gained past the failure detector: within about 28 s a
/// crashed member is `Dead` and leaves `All` (see `PHI_DEAD`), so a wait still short after
/// twice that is waiting on a partition or a restart, which its caller should hear about.
/// Refused rather than clamped, so a caller never believes it waited longer than it did.
pub const WAIT_TIMEOUT_MS_MAX: u64 = 60_000;

/// Events queued for the driver before the oldest are dropped (counted).
pub const EVENTS_MAX: usize = 64 * 1024;

/// Identities a data directory remembers having been written under (each restart from it takes
/// a new one): enough to tell a restart's history in logs, bounded so the state record is.
pub const IDENTITY_HISTORY_MAX: usize = 64;

/// Largest encoded state record of a data directory: version vector bases and horizon (each
/// travels in a digest, so each fits a message), the identity history and the known peers'
/// addresses (at most `MEMBERS_MAX` of `ADDR_SIZE_MAX`).
pub const DISK_STATE_SIZE_MAX: usize = 2 * MESSAGE_SIZE_MAX + MEMBERS_MAX * (ADDR_SIZE_MAX + 2);

const _: () = assert!(KEY_SIZE_MAX > 0 && KEY_SIZE_MAX <= u16::MAX as usize);
const _: () = assert!(MESSAGE_SIZE_MAX <= u32::MAX as usize, "frames carry a u32 length");
const _: () = assert!(DELTA_PAGE_SIZE_TARGET <= MESSAGE_SIZE_MAX - MESSAGE_OVERHEAD_MAX);
const _: () = assert!(CLOCK_SKEW_MS_MAX < GOSSIP_INTERVAL_MS * 60);
const _: () = assert!(TOMBSTONE_GRACE_MS >= 10 * GOSSIP_INTERVAL_MS);
const _: () = assert!(TTL_MS_MAX < WALL_MS_MAX / 2);
const _: () = assert!(
    MEMBERS_MAX * 48 < MESSAGE_SIZE_MAX,
    "a full digest (with every writer a stream) fits a message"
);
const _: () = assert!(TREE_FANOUT >= 2);
const _: () = assert!(0.0 < PHI_SUSPECT && PHI_SUSPECT < PHI_DEAD, "suspect comes before dead");
// The longest time to declare a member dead (its gaps at the sampling cap) stays far below
// its removal, so a member is seen dead for a while before it is removed.
const DEAD_AFTER_MS_MAX: f64 =
    PHI_DEAD * std::f64::consts::LN_10 * (PHI_GAP_INTERVALS_MAX * GOSSIP_INTERVAL_MS) as f64;
const _: () = assert!(DEAD_AFTER_MS_MAX < (DEAD_REMOVE_MS / 4) as f64);
const _: () = assert!(LEFT_REMOVE_MS <= DEAD_REMOVE_MS, "a member that left is gone for sure");
const _: () = assert!(LEFT_REMOVE_MS >= 20 * GOSSIP_INTERVAL_MS, "Left spreads before removal");
const _: () = assert!(PUSH_QUEUE_SIZE_MAX >= MESSAGE_SIZE_MAX);
const _: () = assert!(
    WAIT_TIMEOUT_MS_MAX as f64 >= 2.0 * DEAD_AFTER_MS_MAX,
    "a wait can outlast the detection of a crashed member"
);
