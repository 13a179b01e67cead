//! How the CLI prints results: writes, changes, stats and members, as text lines or JSON.

use std::io::Write;

use chorus::client::WriteResult;
use chorus_proto::Stamp;
use chorus_proto::rpc::{Change, ChangeKind, MemberInfo, StatsReport};
use serde_json::json;

use super::EXIT_WAIT_TIMEOUT;

pub fn print_write(result: &WriteResult, json: bool) -> i32 {
    let timed_out = result.wait.as_ref().is_some_and(|wait| !wait.complete);
    if json {
        let mut object = json!({ "stamp": stamp_json(&result.stamp) });
        if let Some(wait) = &result.wait {
            object["wait"] = json!({
                "complete": wait.complete,
                "confirmed": wait.confirmed.iter().map(member_json).collect::<Vec<_>>(),
                "missing": wait.missing.iter().map(member_json).collect::<Vec<_>>(),
            });
        }
        out!("{object}");
    } else {
        out!("{}", result.stamp);
        if let Some(wait) = &result.wait {
            let names = |members: &[MemberInfo]| {
                members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(",")
            };
            out!("confirmed={}", names(&wait.confirmed));
            if !wait.complete {
                out!("missing={}", names(&wait.missing));
            }
        }
    }
    if timed_out {
        eprintln!("chorus: the wait timed out before every required member confirmed");
        return EXIT_WAIT_TIMEOUT;
    }
    0
}

pub fn print_change(change: &Change, json: bool) {
    if json {
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
        out!("{object}");
    } else {
        let key = escape_key(change.key.as_bytes());
        match (change.kind, &change.value) {
            (ChangeKind::Put, Some(value)) => out!("put {key} {}", escape(value.as_bytes())),
            (ChangeKind::Put, None) => out!("put {key}"),
            (ChangeKind::Delete, _) => out!("del {key}"),
            (ChangeKind::Expire, _) => out!("expire {key}"),
        }
    }
    let _ = std::io::stdout().flush();
}

pub fn print_stats(stats: &StatsReport, json: bool) {
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
    if json {
        let object: serde_json::Map<String, serde_json::Value> = fields.into_iter().collect();
        out!("{}", serde_json::Value::Object(object));
    } else {
        for (name, value) in fields {
            match value {
                serde_json::Value::String(text) => out!("{name}={text}"),
                other => out!("{name}={other}"),
            }
        }
    }
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
}
