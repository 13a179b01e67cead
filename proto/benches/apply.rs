//! Benchmark of the protocol core against the "proto apply" and "metadata" targets (README,
//! Performance): local puts per second on one core, overwrites, overwrites and new keys with a
//! TTL on a store of 100,000 keys (where its reads miss the cache), collecting expired entries,
//! merging a 100k-entry delta (and encoding and decoding it), and the bytes each live entry
//! costs beyond its key and value, in memory and on the wire.
//!
//! Run with `cargo bench -p chorus-proto --bench apply`. Each figure is printed as
//! `name=value`, followed by its target when there is one. Timings are the best of a few
//! runs; memory is counted by a global allocator that tracks live bytes.

#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "a benchmark measures wall time; proto's own sources never read a clock"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chorus_proto::codec;
use chorus_proto::limits::{CLOCK_SKEW_MS_MAX, DELTA_PAGE_SIZE_TARGET};
use chorus_proto::{Clock, Delta, Key, NodeId, Store, Update, Value};

/// Live heap bytes, maintained by [`Counting`].
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
/// Live heap bytes as glibc's malloc takes them: each allocation in a chunk of its size plus an
/// 8-byte header, rounded up to 16 bytes, at least 32 (x86-64). This is what RSS sees.
static CHUNK_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The glibc chunk that holds an allocation of `size` bytes.
fn chunk(size: usize) -> usize {
    ((size + 8 + 15) & !15).max(32)
}

fn allocated(size: usize) {
    LIVE_BYTES.fetch_add(size, Ordering::Relaxed);
    CHUNK_BYTES.fetch_add(chunk(size), Ordering::Relaxed);
}

fn freed(size: usize) {
    LIVE_BYTES.fetch_sub(size, Ordering::Relaxed);
    CHUNK_BYTES.fetch_sub(chunk(size), Ordering::Relaxed);
}

/// The system allocator, counting the bytes currently allocated.
struct Counting;

// SAFETY: every call is forwarded unchanged to `System`, which upholds the contract; the
// counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same layout, same contract as the caller's.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            allocated(layout.size());
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same layout, same contract as the caller's.
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            allocated(layout.size());
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: `pointer` was allocated by `System` with `layout`, as the caller guarantees.
        unsafe { System.dealloc(pointer, layout) };
        freed(layout.size());
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `pointer` was allocated by `System` with `layout`, as the caller guarantees.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            allocated(new_size);
            freed(layout.size());
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A plausible wall clock in milliseconds (2025), so stamps encode at their real width.
const EPOCH_MS: u64 = 1_750_000_000_000;
/// Puts per local-put run.
const PUT_COUNT: usize = 1_000_000;
/// Keys of the overwrite run.
const OVERWRITE_KEY_COUNT: usize = 10_000;
/// Entries of the delta and metadata runs.
const ENTRY_COUNT: usize = 100_000;
/// Writers of the delta run.
const WRITER_COUNT: u64 = 10;
/// Runs per timing; the best is reported.
const RUNS: usize = 3;

fn best_of<T>(mut run: impl FnMut() -> (Duration, T)) -> (Duration, T) {
    let mut best = run();
    for _ in 1..RUNS {
        let next = run();
        if next.0 < best.0 {
            best = next;
        }
    }
    best
}

fn report(name: &str, value: f64, target: &str, met: Option<bool>) {
    let verdict = match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "",
    };
    if target.is_empty() {
        println!("{name}={value:.0}");
    } else {
        println!("{name}={value:.0}    # target {target}: {verdict}");
    }
}

/// A node writing locally: one clock, one counter, time moving a millisecond per 1,000 puts.
struct Writer {
    clock: Clock,
    seq: u64,
    name: String,
}

impl Writer {
    fn new(node: u64) -> Writer {
        Writer { clock: Clock::new(NodeId(node), CLOCK_SKEW_MS_MAX), seq: 0, name: String::new() }
    }

    /// The update for a put of `value` under the key `format(index)`, as a client's request
    /// would build it: validated key and value, a fresh stamp and sequence number.
    fn put(&mut self, index: usize, wide_key: bool, value: &[u8]) -> Update {
        self.name.clear();
        // Writing to a String cannot fail.
        let _ = if wide_key {
            write!(self.name, "key/{index:012}")
        } else {
            write!(self.name, "k/{index}")
        };
        self.seq += 1;
        let now_ms = EPOCH_MS + self.seq / 1_000;
        Update {
            key: Key::new(&self.name).expect("a short key is valid"),
            stamp: self.clock.tick(now_ms),
            seq: self.seq,
            value: Some(Value::new(value).expect("a 16-byte value is valid")),
            expires_at_ms: None,
        }
    }

    /// A put of a 64-byte value under the key `key/{index:012}` that expires an hour after its
    /// stamp, as `SET key value EX 3600` writes a session.
    fn put_with_ttl(&mut self, index: usize) -> Update {
        let mut update = self.put(index, true, &[7; 64]);
        update.expires_at_ms = Some(update.stamp.hlc.wall_ms() + 3_600_000);
        update
    }
}

/// Puts per second of `count` puts over `key_count` keys into one store.
fn puts_per_second(count: usize, key_count: usize) -> f64 {
    let (elapsed, store) = best_of(|| {
        let mut store = Store::new();
        let mut writer = Writer::new(1);
        let start = Instant::now();
        for index in 0..count {
            let update = writer.put(index % key_count, false, &[7; 16]);
            black_box(store.apply(update));
        }
        (start.elapsed(), store)
    });
    assert_eq!(store.entry_count(), key_count.min(count));
    count as f64 / elapsed.as_secs_f64()
}

/// Nanoseconds per overwrite, as a replica applies a Redis client's `SET key value EX 3600`
/// stream: `ENTRY_COUNT` keys, 16-byte keys and 64-byte values, every one with an expiry, all
/// written once, then `count` overwrites by one writer, of keys drawn at random. Each update is
/// made just before it is applied (a key and a value allocated and copied, a stamp taken), as a
/// replica decodes it, and that is timed too. Every overwrite finds its key through the hash
/// index and moves its entry in the dot and expiry indexes; on this many keys those reads miss
/// the cache, as they do in a node.
fn ttl_overwrite_ns(count: usize) -> f64 {
    let (elapsed, _) = best_of(|| {
        let mut writer = Writer::new(1);
        let mut put = |index: usize| writer.put_with_ttl(index);
        let mut store = Store::new();
        for index in 0..ENTRY_COUNT {
            store.apply(put(index));
        }
        // Random keys, as redis-benchmark's `-r` draws them: a stride through the keys (a
        // multiple modulo a power of two) overwrites each chunk of the indexes front to back,
        // which no client does and which misleads their guesses.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let start = Instant::now();
        for _ in 0..count {
            let index = (splitmix64(&mut state) % ENTRY_COUNT as u64) as usize;
            black_box(store.apply(put(index)));
        }
        let elapsed = start.elapsed();
        assert_eq!(store.entry_count(), ENTRY_COUNT);
        (elapsed, store)
    });
    elapsed.as_secs_f64() * 1e9 / count as f64
}

/// Nanoseconds per new key with a TTL (a new session): `count` keys drawn at random among a
/// billion, each made just before it is applied, into a store that holds `ENTRY_COUNT`
/// such keys already.
fn new_key_ns(count: usize) -> f64 {
    let (elapsed, _) = best_of(|| {
        let mut writer = Writer::new(1);
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut put = |index: usize| writer.put_with_ttl(index);
        let mut store = Store::new();
        for _ in 0..ENTRY_COUNT {
            store.apply(put(new_key_index(&mut state)));
        }
        let start = Instant::now();
        for _ in 0..count {
            black_box(store.apply(put(new_key_index(&mut state))));
        }
        (start.elapsed(), store)
    });
    elapsed.as_secs_f64() * 1e9 / count as f64
}

/// Milliseconds to collect `ENTRY_COUNT` expired entries (keys drawn at random among a
/// billion, as sessions' are), once every writer's writes are stable.
fn collect_expired_ms() -> f64 {
    let (elapsed, _) = best_of(|| {
        let mut writer = Writer::new(1);
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut store = Store::new();
        while store.entry_count() < ENTRY_COUNT {
            let index = new_key_index(&mut state);
            let mut update = writer.put(index, true, &[7; 64]);
            update.expires_at_ms = Some(EPOCH_MS + 1_000);
            store.apply(update);
        }
        let stable = store.vector().bases().clone();
        let start = Instant::now();
        let collected = store.collect(&stable, EPOCH_MS + 3_600_000, 0);
        let elapsed = start.elapsed();
        assert_eq!(collected, ENTRY_COUNT);
        (elapsed, store)
    });
    milliseconds(elapsed)
}

/// A key index drawn at random among a billion, as new sessions' keys are: seldom one held.
fn new_key_index(state: &mut u64) -> usize {
    (splitmix64(state) % 1_000_000_000) as usize
}

/// The next number of the SplitMix64 generator (Steele, Lea and Flood, 2014) from `state`.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A store holding `ENTRY_COUNT` entries from `WRITER_COUNT` nodes, 16-byte keys and values.
fn source_store() -> Store {
    let mut writers: Vec<Writer> = (0..WRITER_COUNT).map(|node| Writer::new(node + 1)).collect();
    let mut store = Store::new();
    for index in 0..ENTRY_COUNT {
        let writer = &mut writers[index % WRITER_COUNT as usize];
        store.apply(writer.put(index, true, &[7; 16]));
    }
    store
}

fn milliseconds(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

/// Merging a 100k-entry delta into an empty store, in one piece and in wire-sized pages.
fn delta_merge() {
    let source = source_store();
    let (delta, complete) = source.delta(&BTreeMap::new(), usize::MAX);
    assert!(complete && delta.update_count() == ENTRY_COUNT);

    // One piece is larger than a message may be, so it is encoded without the message limit
    // and decoded by postcard directly; the pages below go through the real codec.
    let (encode, bytes) = best_of(|| {
        let start = Instant::now();
        let bytes = codec::encode_with_limit(&delta, usize::MAX).expect("encodes");
        (start.elapsed(), bytes)
    });
    let (decode, decoded) = best_of(|| {
        let start = Instant::now();
        let decoded: Delta = postcard::from_bytes(&bytes).expect("decodes");
        (start.elapsed(), decoded)
    });
    assert_eq!(decoded, delta);
    let (merge, _) = best_of(|| {
        let delta = decoded.clone();
        let mut store = Store::new();
        let start = Instant::now();
        black_box(store.apply_delta(delta, &Default::default()));
        let elapsed = start.elapsed();
        assert_eq!(store.entry_count(), ENTRY_COUNT);
        (elapsed, store)
    });
    let merge_ms = milliseconds(merge);
    println!("delta_100k_merge_ms={merge_ms:.1}    # target < 100: {}", verdict(merge_ms < 100.0));
    println!("delta_100k_encode_ms={:.1}", milliseconds(encode));
    println!("delta_100k_decode_ms={:.1}", milliseconds(decode));
    report("delta_100k_bytes", bytes.len() as f64, "", None);

    // The same catch-up as the wire carries it: pages of DELTA_PAGE_SIZE_TARGET bytes.
    let mut pages = Vec::new();
    let mut bases = BTreeMap::new();
    let start = Instant::now();
    loop {
        let (page, complete) = source.delta(&bases, DELTA_PAGE_SIZE_TARGET);
        page.advance(&mut bases);
        pages.push(codec::encode(&page).expect("a page fits in a message"));
        if complete {
            break;
        }
    }
    let paging = start.elapsed();
    let (merge, _) = best_of(|| {
        let mut store = Store::new();
        let start = Instant::now();
        for bytes in &pages {
            let page: Delta = codec::decode(bytes).expect("a page decodes");
            black_box(store.apply_delta(page, &Default::default()));
        }
        let elapsed = start.elapsed();
        assert_eq!(store.entry_count(), ENTRY_COUNT);
        assert_eq!(store.vector().bases(), source.vector().bases());
        (elapsed, store)
    });
    report("delta_100k_pages", pages.len() as f64, "", None);
    println!("delta_100k_paged_build_and_encode_ms={:.1}", milliseconds(paging));
    println!("delta_100k_paged_decode_and_merge_ms={:.1}", milliseconds(merge));
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// Heap bytes per live entry beyond its 16-byte key and 16-byte value (everything the store
/// allocates for `ENTRY_COUNT` entries, indexes included, divided by the count, less 32), as
/// requested and as malloc's chunks take them, with keys inserted in ascending or scattered
/// order (index nodes fill differently), with or without a TTL.
fn metadata_bytes_per_entry(scattered: bool, ttl: bool) -> (f64, f64) {
    let mut writer = Writer::new(1);
    let before = (LIVE_BYTES.load(Ordering::Relaxed), CHUNK_BYTES.load(Ordering::Relaxed));
    let mut store = Store::new();
    for index in 0..ENTRY_COUNT {
        // Multiplying by an odd constant modulo a power of two visits every index once.
        let key = if scattered { (index * 40_503) % (1 << 17) } else { index };
        let mut update = writer.put(key, true, &[7; 16]);
        if ttl {
            update.expires_at_ms = Some(EPOCH_MS + 3_600_000 + index as u64);
        }
        store.apply(update);
    }
    let after = (LIVE_BYTES.load(Ordering::Relaxed), CHUNK_BYTES.load(Ordering::Relaxed));
    assert_eq!(store.entry_count(), ENTRY_COUNT);
    let per_entry =
        |before: usize, after: usize| (after - before) as f64 / ENTRY_COUNT as f64 - 32.0;
    drop(store);
    (per_entry(before.0, after.0), per_entry(before.1, after.1))
}

/// Reports the metadata figures of [`metadata_bytes_per_entry`].
fn metadata() {
    for (name, scattered, ttl) in [
        ("metadata_bytes_per_entry", true, false),
        ("metadata_bytes_per_entry_ascending_keys", false, false),
        ("metadata_bytes_per_entry_with_ttl", true, true),
    ] {
        let (requested, chunks) = metadata_bytes_per_entry(scattered, ttl);
        report(name, requested, "<= 64", Some(requested <= 64.0));
        report(&format!("{name}_in_malloc_chunks"), chunks, "<= 64", Some(chunks <= 64.0));
    }
}

/// Applying `PUT_COUNT` ready-made updates (keys `session/00000001`..., 16-byte values, three
/// writers) into an empty store, in key order as a snapshot gives them: what a node restoring
/// a data directory does before it serves.
fn snapshot_apply_ms() -> f64 {
    let mut writers: Vec<Writer> = (1..=3).map(Writer::new).collect();
    let updates: Vec<Update> = (1..=PUT_COUNT)
        .map(|index| {
            let mut update = writers[index % 3].put(index, false, &[7; 16]);
            update.key = Key::new(format!("session/{index:08}")).expect("a short key is valid");
            update
        })
        .collect();
    let (elapsed, _) = best_of(|| {
        let updates = updates.clone();
        let mut store = Store::new();
        let start = Instant::now();
        for update in updates {
            store.apply(update);
        }
        let elapsed = start.elapsed();
        assert_eq!(store.entry_count(), PUT_COUNT);
        (elapsed, store)
    });
    milliseconds(elapsed)
}

/// Encoded bytes of an update beyond its key and value, for a typical put and a TTL put.
fn wire_metadata() -> (usize, usize) {
    let mut writer = Writer { seq: 1_000_000, ..Writer::new(0x8f3a_51c2_9e07_d4b6) };
    let mut update = writer.put(42, true, &[7; 16]);
    let payload = update.key.as_bytes().len() + 16;
    let plain = codec::encode(&update).expect("encodes").len() - payload;
    update.expires_at_ms = Some(EPOCH_MS + 3_600_000);
    let with_ttl = codec::encode(&update).expect("encodes").len() - payload;
    (plain, with_ttl)
}

fn main() {
    // `cargo test --benches` runs benches with `--bench` absent: stay quick there.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("apply: run with `cargo bench -p chorus-proto --bench apply` to measure");
        return;
    }
    let started = Instant::now();
    let local = puts_per_second(PUT_COUNT, PUT_COUNT);
    report("local_puts_per_s", local, ">= 1000000", Some(local >= 1_000_000.0));
    let overwrite = puts_per_second(PUT_COUNT, OVERWRITE_KEY_COUNT);
    report("overwrite_puts_per_s", overwrite, ">= 1000000", Some(overwrite >= 1_000_000.0));
    println!("ttl_overwrite_100k_keys_ns={:.0}", ttl_overwrite_ns(PUT_COUNT));
    println!("new_key_ttl_100k_keys_ns={:.0}", new_key_ns(200_000));
    println!("collect_100k_expired_ms={:.1}", collect_expired_ms());
    delta_merge();
    metadata();
    println!("apply_1m_snapshot_updates_ms={:.0}", snapshot_apply_ms());
    let (plain, with_ttl) = wire_metadata();
    report("wire_metadata_bytes_per_update", plain as f64, "", None);
    report("wire_metadata_bytes_per_update_with_ttl", with_ttl as f64, "", None);
    println!("bench_seconds={:.1}", started.elapsed().as_secs_f64());
}
