//! The text forms chorus shares between the CLI's `--json` output and the HTTP API (one shape
//! for both, so a script can move from one to the other): keys, values, stamps, members,
//! changes, writes and stats as JSON; escapes for text lines; durations and wait levels as
//! flags and query parameters spell them.

use std::time::Duration;

use chorus_proto::rpc::{Change, ChangeKind, MemberInfo, StatsReport, WaitReport};
use chorus_proto::{Stamp, WaitLevel};
use serde_json::json;

/// A change as one JSON object: cursor, kind (`put`, `del`, `expire`), key, value, stamp.
pub fn change_json(change: &Change) -> serde_json::Value {
    let kind = match change.kind {
        ChangeKind::Put => "put",
        ChangeKind::Delete => "del",
        ChangeKind::Expire => "expire",
    };
    let mut object = json!({ "cursor": change.cursor, "kind": kind });
    key_json(&mut object, "key", change.key.as_bytes());
    if let Some(value) = &change.value {
        bytes_json(&mut object, "value", value.as_bytes());
    }
    if let Some(stamp) = &change.stamp {
        object["stamp"] = stamp_json(stamp);
    }
    object
}

/// A finished write: its stamp, and with a wait, who confirmed it and who is missing.
pub fn write_json(stamp: &Stamp, wait: Option<&WaitReport>) -> serde_json::Value {
    let mut object = json!({ "stamp": stamp_json(stamp) });
    if let Some(wait) = wait {
        object["wait"] = json!({
            "complete": wait.complete,
            "confirmed": wait.confirmed.iter().map(member_json).collect::<Vec<_>>(),
            "missing": wait.missing.iter().map(member_json).collect::<Vec<_>>(),
        });
    }
    object
}

/// Puts keys in a JSON object under `keys`: each its text as [`key_json`] gives it, and, when
/// some key is not UTF-8, every key's exact bytes in hex under `keys_hex`, in the same order.
pub fn keys_json<'a>(object: &mut serde_json::Value, keys: impl Iterator<Item = &'a [u8]>) {
    let mut texts = Vec::new();
    let mut hexes = Vec::new();
    let mut all_text = true;
    for bytes in keys {
        let mut text = json!({});
        key_json(&mut text, "key", bytes);
        all_text &= text.get("key_hex").is_none();
        texts.push(text["key"].take());
        hexes.push(hex(bytes));
    }
    object["keys"] = json!(texts);
    if !all_text {
        object["keys_hex"] = json!(hexes);
    }
}

/// A node's stats as named fields, in the order `chorus stats` prints them.
pub fn stats_fields(stats: &StatsReport) -> Vec<(String, serde_json::Value)> {
    let skew_peers: Vec<String> =
        stats.skew_by_peer.iter().map(|(peer, count)| format!("{peer}:{count}")).collect();
    let mut fields: Vec<(String, serde_json::Value)> = [
        ("name", json!(stats.name)),
        ("id", json!(stats.id.to_string())),
        ("uptime_ms", json!(stats.uptime_ms)),
        ("keys", json!(stats.keys)),
        ("tombstones", json!(stats.tombstones)),
        ("expired", json!(stats.expired)),
        ("members_alive", json!(stats.members[0])),
        ("members_suspect", json!(stats.members[1])),
        ("members_dead", json!(stats.members[2])),
        ("members_left", json!(stats.members[3])),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect();
    fields.extend(stats.counters.iter().map(|c| (c.name.clone(), json!(c.value))));
    fields.push(("skew_peers".to_string(), json!(skew_peers.join(","))));
    let clock_peers: Vec<String> = stats
        .clock_peers
        .iter()
        .map(|(peer, offset, rtt)| format!("{peer}:{offset}:{rtt}"))
        .collect();
    fields.push(("clock_offset_ms".to_string(), json!(stats.clock_offset_ms)));
    fields.push(("clock_peers".to_string(), json!(clock_peers.join(","))));
    fields.push(("ready".to_string(), json!(stats.not_ready.is_none())));
    fields.push(("not_ready".to_string(), json!(stats.not_ready.clone().unwrap_or_default())));
    fields
}

/// A node's stats as one JSON object.
pub fn stats_json(stats: &StatsReport) -> serde_json::Value {
    serde_json::Value::Object(stats_fields(stats).into_iter().collect())
}

pub fn member_json(member: &MemberInfo) -> serde_json::Value {
    json!({
        "name": member.name,
        "id": member.id.to_string(),
        "addr": member.addr,
        "state": member.state.as_str(),
        "incarnation": member.incarnation,
    })
}

pub fn stamp_json(stamp: &Stamp) -> serde_json::Value {
    json!({
        "text": stamp.to_string(),
        "wall_ms": stamp.hlc.wall_ms(),
        "logical": stamp.hlc.logical(),
        "node": stamp.node.to_string(),
    })
}

/// Puts bytes in a JSON object: as text when they are UTF-8, else as hex under `<field>_hex`.
pub fn bytes_json(object: &mut serde_json::Value, field: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => object[field] = json!(text),
        Err(_) => object[format!("{field}_hex")] = json!(hex(bytes)),
    }
}

/// Puts a key (or prefix) in a JSON object: its text when it is UTF-8; otherwise its escaped
/// text (distinct keys stay distinct) and, beside it, its exact bytes in hex under
/// `<field>_hex` (what `--hex` takes back).
pub fn key_json(object: &mut serde_json::Value, field: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => object[field] = json!(text),
        Err(_) => {
            object[field] = json!(escape(bytes));
            object[format!("{field}_hex")] = json!(hex(bytes));
        }
    }
}

/// Bytes in lowercase hex, two digits each.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A value as the rest of a text line: it can never end the line or forge another.
pub fn escape(bytes: &[u8]) -> String {
    escape_with(bytes, false)
}

/// A key as one field of a text line: as [`escape`], and spaces as `\x20`, so the fields of
/// a `watch` line always split the same way.
pub fn escape_key(bytes: &[u8]) -> String {
    escape_with(bytes, true)
}

/// Backslash, newline, carriage return and tab as `\\`, `\n`, `\r`, `\t`; other ASCII
/// control characters and every byte that is not UTF-8 as `\xHH`; Unicode controls, line
/// and paragraph separators and bidirectional overrides (which can make a terminal show text
/// that is not there) as `\u{H}`; spaces as `\x20` when `space`.
fn escape_with(bytes: &[u8], space: bool) -> String {
    use std::fmt::Write as _;
    let mut line = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            // Writing to a String cannot fail.
            let _ = match c {
                '\\' => write!(line, "\\\\"),
                '\n' => write!(line, "\\n"),
                '\r' => write!(line, "\\r"),
                '\t' => write!(line, "\\t"),
                ' ' if space => write!(line, "\\x20"),
                c if c.is_ascii_control() => write!(line, "\\x{:02x}", c as u32),
                c if c.is_control() || is_invisible_format(c) => {
                    write!(line, "\\u{{{:x}}}", c as u32)
                }
                c => write!(line, "{c}"),
            };
        }
        for byte in chunk.invalid() {
            let _ = write!(line, "\\x{byte:02x}");
        }
    }
    line
}

/// Characters that move or reorder text on a terminal without being control characters.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Parses a wait level: `local`, `all`, or a number of nodes (1 is `local`).
pub fn parse_wait(text: &str) -> Result<WaitLevel, String> {
    match text {
        "local" => Ok(WaitLevel::Local),
        "all" => Ok(WaitLevel::All),
        count => match count.parse::<u32>() {
            Ok(0) | Err(_) => {
                Err(format!("'{text}': expected local, all, or a number of nodes (1 or more)"))
            }
            Ok(1) => Ok(WaitLevel::Local),
            Ok(count) => Ok(WaitLevel::Count(count)),
        },
    }
}

/// Parses durations such as `500ms`, `30s`, `10m`, `2h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("'{text}': expected a number and a unit (ms, s, m, h)"))?;
    let millis = match unit {
        "ms" => Some(number),
        "s" => number.checked_mul(1_000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        _ => return Err(format!("'{text}': the unit must be ms, s, m or h")),
    };
    millis.map(Duration::from_millis).ok_or_else(|| format!("'{text}': too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_lines_stay_on_one_line() {
        assert_eq!(escape(b"a\nb\\c\td"), "a\\nb\\\\c\\td");
        assert_eq!(escape(b"a\r\x1b[2J\x7f"), "a\\r\\x1b[2J\\x7f");
        assert_eq!(escape(b"caf\xc3\xa9 \xff\xfe"), "caf\u{e9} \\xff\\xfe");
        assert_eq!(escape("x\u{2028}\u{202e}y\u{85}".as_bytes()), "x\\u{2028}\\u{202e}y\\u{85}");
        assert_eq!(escape_key(b"a b\nput x"), "a\\x20b\\nput\\x20x");
    }

    #[test]
    fn keys_that_are_not_utf8_have_hex_beside_their_text() {
        let mut object = json!({});
        key_json(&mut object, "key", b"k\xff");
        assert_eq!(object, json!({ "key": "k\\xff", "key_hex": "6bff" }));
        let mut object = json!({});
        key_json(&mut object, "key", "k\n\u{e9}".as_bytes());
        assert_eq!(object, json!({ "key": "k\n\u{e9}" }));
    }

    #[test]
    fn durations_parse_with_units_and_refuse_nonsense() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7_200)));
        for bad in ["", "s", "10", "10d", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wait_levels_parse() {
        assert_eq!(parse_wait("all"), Ok(WaitLevel::All));
        assert_eq!(parse_wait("local"), Ok(WaitLevel::Local));
        assert_eq!(parse_wait("3"), Ok(WaitLevel::Count(3)));
        assert!(parse_wait("0").is_err());
        assert!(parse_wait("most").is_err());
    }
}
