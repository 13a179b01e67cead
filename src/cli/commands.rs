//! The client commands: put, get, del, ls, watch, members, stats. Each connects to one node,
//! makes its requests through [`chorus::Client`], and prints through `print`.

use std::io::{Read, Write};

use chorus::client::{Client, ClientError, WriteOptions};
use serde_json::json;

use super::args::{Command, Connect, WaitArgs};
use super::handler::Handler;
use super::print::{
    bytes_json, escape_key, key_json, member_json, print_change, print_stats, print_write,
    stamp_json,
};
use super::{EXIT_FAILED, EXIT_USAGE};
use chorus::text::keys_json;

/// The value of a fallible argument, or: say why on stderr and exit with the usage code.
macro_rules! usage {
    ($argument:expr) => {
        match $argument {
            Ok(value) => value,
            Err(why) => {
                eprintln!("chorus: {why}");
                return Ok(EXIT_USAGE);
            }
        }
    };
}

/// Runs a client command; returns its exit code, or the error that stopped it.
pub async fn run(command: Command) -> Result<i32, ClientError> {
    match command {
        Command::Put { key, value, ttl, wait, connect } => {
            let key = usage!(key.bytes());
            put(key, value, ttl, wait, connect).await
        }
        Command::Del { key, wait, connect } => {
            let key = usage!(key.bytes());
            session(&connect, async |client| {
                let result = client.delete(key, write_options(None, &wait)).await?;
                Ok(print_write(&result, connect.json))
            })
            .await
        }
        Command::Get { key, connect } => {
            let key = usage!(key.bytes());
            session(&connect, async |client| get(client, key, connect.json).await).await
        }
        Command::Ls { prefix, limit, connect } => {
            let prefix = usage!(prefix.bytes());
            session(&connect, async |client| list(client, prefix, limit, connect.json).await).await
        }
        Command::Watch { prefix, exec: Some(command), exec_timeout, connect } => {
            let prefix = usage!(prefix.bytes());
            let handler = Handler { command, timeout: exec_timeout };
            super::handler::run(&connect, &prefix, &handler).await
        }
        Command::Watch { prefix, exec: None, connect, .. } => {
            let prefix = usage!(prefix.bytes());
            session(&connect, async |client| {
                let mut watch = client.watch(prefix, None).await?;
                while let Some(change) = watch.next().await {
                    print_change(&change?, connect.json);
                }
                Err(ClientError::Unreachable("the node closed the watch".into()))
            })
            .await
        }
        Command::Members { connect } => {
            session(&connect, async |client| members(client, connect.json).await).await
        }
        Command::Stats { connect } => {
            session(&connect, async |client| {
                print_stats(&client.stats().await?, connect.json);
                Ok(0)
            })
            .await
        }
        Command::Node(_) | Command::Keygen { .. } | Command::Demo { .. } | Command::Bench(_) => {
            Ok(EXIT_USAGE)
        }
    }
}

/// Connects, runs `work` with the client, then closes the connection, so the node frees it at
/// once instead of at its idle timeout (a one-shot command exits right after).
async fn session(
    connect: &Connect,
    work: impl AsyncFnOnce(&Client) -> Result<i32, ClientError>,
) -> Result<i32, ClientError> {
    let client = connect.client().await?;
    let result = work(&client).await;
    client.close().await;
    result
}

fn write_options(ttl: Option<std::time::Duration>, wait: &WaitArgs) -> WriteOptions {
    WriteOptions { ttl, wait: wait.wait, timeout: wait.timeout }
}

async fn put(
    key: Vec<u8>,
    value: String,
    ttl: Option<std::time::Duration>,
    wait: WaitArgs,
    connect: Connect,
) -> Result<i32, ClientError> {
    let value = match read_value(&value) {
        Ok(value) => value,
        Err(why) => {
            eprintln!("chorus: {why}");
            return Ok(EXIT_USAGE);
        }
    };
    session(&connect, async |client| {
        let result = client.put(key, value, write_options(ttl, &wait)).await?;
        Ok(print_write(&result, connect.json))
    })
    .await
}

async fn get(client: &Client, key: Vec<u8>, json: bool) -> Result<i32, ClientError> {
    let Some((value, stamp)) = client.get(&key).await? else {
        if json {
            let mut object = json!({ "found": false });
            key_json(&mut object, "key", &key);
            out!("{object}");
        }
        return Ok(EXIT_FAILED);
    };
    if json {
        let mut object = json!({ "found": true, "stamp": stamp_json(&stamp) });
        key_json(&mut object, "key", &key);
        bytes_json(&mut object, "value", value.as_bytes());
        out!("{object}");
    } else {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(value.as_bytes());
        let _ = stdout.flush();
    }
    Ok(0)
}

async fn list(
    client: &Client,
    prefix: Vec<u8>,
    limit: Option<u64>,
    json: bool,
) -> Result<i32, ClientError> {
    let mut remaining = limit.unwrap_or(u64::MAX);
    let mut after: Option<Vec<u8>> = None;
    // With --json the keys go in one object (README, CLI), so they are collected first.
    let mut listed: Vec<Vec<u8>> = Vec::new();
    while remaining > 0 {
        let page = remaining.min(u64::from(chorus_proto::rpc::LIST_LIMIT_MAX)) as u32;
        let (keys, more) = client.list(&prefix, after.as_deref(), page).await?;
        remaining -= keys.len() as u64;
        for key in &keys {
            if json {
                listed.push(key.as_bytes().to_vec());
            } else {
                out!("{}", escape_key(key.as_bytes()));
            }
        }
        match keys.last() {
            Some(last) if more => after = Some(last.as_bytes().to_vec()),
            _ => break,
        }
    }
    if json {
        let mut object = json!({});
        keys_json(&mut object, listed.iter().map(Vec::as_slice));
        key_json(&mut object, "prefix", &prefix);
        out!("{object}");
    }
    Ok(0)
}

async fn members(client: &Client, json: bool) -> Result<i32, ClientError> {
    let members = client.members().await?;
    if json {
        let members: Vec<_> = members.iter().map(member_json).collect();
        out!("{}", json!({ "members": members }));
        return Ok(0);
    }
    for member in members {
        out!("{} {} {} {}", member.name, member.id, member.addr, member.state.as_str());
    }
    Ok(0)
}

/// A VALUE argument: `-` reads standard input, `@FILE` reads a file, anything else is literal.
fn read_value(argument: &str) -> Result<Vec<u8>, String> {
    let limit = chorus_proto::limits::VALUE_SIZE_MAX as u64 + 1;
    if argument == "-" {
        let mut value = Vec::new();
        std::io::stdin()
            .take(limit)
            .read_to_end(&mut value)
            .map_err(|e| format!("reading stdin: {e}"))?;
        return Ok(value);
    }
    if let Some(path) = argument.strip_prefix('@') {
        let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
        let mut value = Vec::new();
        file.take(limit).read_to_end(&mut value).map_err(|e| format!("{path}: {e}"))?;
        return Ok(value);
    }
    Ok(argument.as_bytes().to_vec())
}
