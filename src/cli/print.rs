//! How the CLI prints results: writes, changes, stats and members, as text lines or JSON (the
//! JSON shapes are `chorus::text`'s, shared with the HTTP API).

use std::io::Write;

use chorus::client::WriteResult;
pub use chorus::text::{bytes_json, escape, escape_key, key_json, member_json, stamp_json};
use chorus::text::{change_json, stats_fields, write_json};
use chorus_proto::rpc::{Change, ChangeKind, MemberInfo, StatsReport};

use super::EXIT_WAIT_TIMEOUT;

pub fn print_write(result: &WriteResult, json: bool) -> i32 {
    let timed_out = result.wait.as_ref().is_some_and(|wait| !wait.complete);
    if json {
        out!("{}", write_json(&result.stamp, result.wait.as_ref()));
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
        out!("{}", change_json(change));
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
    let fields = stats_fields(stats);
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
