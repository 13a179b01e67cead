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
    let key = change.key.to_string();
    if json {
        let kind = match change.kind {
            ChangeKind::Put => "put",
            ChangeKind::Delete => "del",
            ChangeKind::Expire => "expire",
        };
        let mut object = json!({ "cursor": change.cursor, "kind": kind, "key": key });
        if let Some(value) = &change.value {
            bytes_json(&mut object, "value", value.as_bytes());
        }
        if let Some(stamp) = &change.stamp {
            object["stamp"] = stamp_json(stamp);
        }
        out!("{object}");
    } else {
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
        Err(_) => {
            object[format!("{field}_hex")] =
                json!(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
        }
    }
}

/// One line of text for a value: control characters and backslashes escaped.
pub fn escape(bytes: &[u8]) -> String {
    let mut line = String::new();
    for c in String::from_utf8_lossy(bytes).chars() {
        match c {
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            c if c.is_control() => line.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => line.push(c),
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_lines_stay_on_one_line() {
        assert_eq!(escape(b"a\nb\\c\td"), "a\\nb\\\\c\\td");
    }
}
