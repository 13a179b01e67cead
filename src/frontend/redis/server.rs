//! Connection and server commands: `PING`, `ECHO`, `AUTH`, `SELECT`, `HELLO`, `CLIENT`,
//! `QUIT`, `RESET`, `INFO`, `COMMAND`, `CONFIG`, and the database-wide `KEYS`, `SCAN`,
//! `DBSIZE`, `FLUSHDB`, `FLUSHALL`.

use std::sync::atomic::Ordering;

use chorus_proto::keyspace::DATABASES;
use chorus_proto::resp::Reply;
use tokio::net::TcpStream;

use super::command::{OwnedArgs, arity, integer, syntax, upper};
use super::connection::Connection;
use super::pubsub::NotifyFlags;
use super::{lock, scan};
use crate::frontend::same_secret;

/// The Redis version chorus answers to: clients choose their commands by it, and chorus
/// serves what Redis 7.2 clients send on connect (`HELLO 3`, `CLIENT SETINFO`).
pub const REDIS_VERSION: &str = "7.2.0";

impl Connection {
    /// Runs a connection or server command; `None` if `name` is none of them.
    pub(super) fn server_command(&mut self, name: &str, args: &OwnedArgs) -> Option<Reply> {
        let reply = match name {
            "PING" => match args {
                [] => Reply::Simple("PONG".into()),
                [text] => Reply::Bulk(text.clone()),
                _ => arity("ping"),
            },
            "ECHO" => match args {
                [text] => Reply::Bulk(text.clone()),
                _ => arity("echo"),
            },
            "AUTH" => self.auth(args),
            "SELECT" => self.select(args),
            "HELLO" => self.hello(args),
            "CLIENT" => self.client(args),
            "QUIT" => {
                self.closing = true;
                Reply::ok()
            }
            "RESET" => self.reset(),
            "INFO" => self.info(),
            "COMMAND" => command(args),
            "CONFIG" => self.config(args),
            "UNWATCH" => Reply::ok(),
            _ => return None,
        };
        Some(reply)
    }

    /// Runs a command over a whole database (`scan::walks`): sends the replies before it
    /// first (they are ready, and it may take seconds), then works a page per hold of the
    /// lock while the Redis thread serves its other clients.
    pub(super) async fn walk(
        &mut self,
        name: &str,
        args: &OwnedArgs,
        output: &mut Vec<u8>,
        stream: &mut TcpStream,
    ) -> std::io::Result<()> {
        self.flush(output, stream).await?;
        self.unsynced = true;
        let (driver, db) = (&self.server.driver, self.db);
        let server = self.server.clone();
        let turn = server.long_turn().await;
        let reply = match name {
            "KEYS" => scan::keys(driver, db, args).await,
            "SCAN" => scan::scan(driver, &self.server.cursors, db, args).await,
            "DBSIZE" => scan::dbsize(driver, db).await,
            "FLUSHDB" => scan::flushdb(driver, db, args).await,
            "FLUSHALL" => scan::flushall(driver, args).await,
            _ => Reply::error(format!("{name} is not a database-wide command")),
        };
        self.encode_long(reply, output).await;
        drop(turn);
        Ok(())
    }

    /// `AUTH [username] password`. Without a configured password every `AUTH` succeeds, so an
    /// application configured with one (for another Redis) still connects to a local node.
    fn auth(&mut self, args: &OwnedArgs) -> Reply {
        let (user, password) = match args {
            [password] => (b"default".as_slice(), password),
            [user, password] => (user.as_slice(), password),
            _ => return arity("auth"),
        };
        match &self.server.password {
            None => Reply::ok(),
            Some(expected) if user == b"default" && same_secret(expected.as_bytes(), password) => {
                self.authenticated = true;
                Reply::ok()
            }
            Some(_) => {
                Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
            }
        }
    }

    /// `SELECT db`: each database is its own key space.
    fn select(&mut self, args: &OwnedArgs) -> Reply {
        let [db] = args else { return arity("select") };
        match integer(db) {
            Ok(db) if (0..i64::from(DATABASES)).contains(&db) => {
                self.db = db as u8;
                Reply::ok()
            }
            Ok(_) => Reply::error("DB index is out of range"),
            Err(reply) => reply,
        }
    }

    /// `HELLO [protover [AUTH username password] [SETNAME name]]`.
    fn hello(&mut self, args: &OwnedArgs) -> Reply {
        let (version, mut options) = match args.split_first() {
            None => (None, &args[..0]),
            Some((version, options)) => (Some(version), options),
        };
        let resp3 = match version.map(|v| integer(v)) {
            None => self.resp3,
            Some(Ok(2)) => false,
            Some(Ok(3)) => true,
            Some(_) => return Reply::Error("NOPROTO unsupported protocol version".into()),
        };
        while let Some((option, rest)) = options.split_first() {
            match (upper(option).as_str(), rest) {
                ("AUTH", [user, password, more @ ..]) => {
                    if let Reply::Error(error) = self.auth(&[user.clone(), password.clone()]) {
                        return Reply::Error(error);
                    }
                    options = more;
                }
                ("SETNAME", [name, more @ ..]) => {
                    self.name = Some(name.clone());
                    options = more;
                }
                _ => return syntax(),
            }
        }
        if !self.authenticated {
            return Reply::Error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into());
        }
        self.resp3 = resp3;
        Reply::Map(vec![
            (Reply::text("server"), Reply::text("redis")),
            (Reply::text("version"), Reply::text(REDIS_VERSION)),
            (Reply::text("proto"), Reply::Integer(if resp3 { 3 } else { 2 })),
            (Reply::text("id"), Reply::Integer(self.id as i64)),
            (Reply::text("mode"), Reply::text("standalone")),
            (Reply::text("role"), Reply::text("master")),
            (Reply::text("modules"), Reply::Array(Vec::new())),
        ])
    }

    /// `CLIENT SETNAME|GETNAME|ID|SETINFO|INFO|LIST|NO-EVICT|NO-TOUCH`.
    fn client(&mut self, args: &OwnedArgs) -> Reply {
        let Some((subcommand, rest)) = args.split_first() else { return arity("client") };
        match (upper(subcommand).as_str(), rest) {
            ("SETNAME", [name]) => {
                self.name = Some(name.clone());
                Reply::ok()
            }
            ("GETNAME", []) => self.name.clone().map_or(Reply::Null, Reply::Bulk),
            ("ID", []) => Reply::Integer(self.id as i64),
            ("SETINFO", [_, _]) | ("NO-EVICT", [_]) | ("NO-TOUCH", [_]) => Reply::ok(),
            ("INFO", []) | ("LIST", _) => Reply::text(format!(
                "id={} name={} db={} resp={}\n",
                self.id,
                String::from_utf8_lossy(self.name.as_deref().unwrap_or_default()),
                self.db,
                if self.resp3 { 3 } else { 2 }
            )),
            (other, _) => Reply::error(format!(
                "unknown subcommand or wrong number of arguments for 'CLIENT|{}'",
                other.to_lowercase()
            )),
        }
    }

    /// `RESET`: back to a fresh connection's state (authentication included).
    fn reset(&mut self) -> Reply {
        let server = self.server.clone();
        let id = self.id;
        *self = Connection::new(server);
        self.id = id;
        Reply::Simple("RESET".into())
    }

    /// `INFO`: Redis's text format, every section headed by `# Name` (Lucee's parser needs
    /// that) and `loading:0` (ioredis waits for it).
    fn info(&self) -> Reply {
        let stats = self.server.driver.stats().ok();
        let keys = stats.as_ref().map_or(0, |stats| stats.keys);
        let uptime_s = stats.as_ref().map_or(0, |stats| stats.uptime_ms / 1_000);
        let clients = self.server.connected.load(Ordering::Relaxed);
        let text = format!(
            "# Server\r\nredis_version:{REDIS_VERSION}\r\nchorus_version:{}\r\nredis_mode:standalone\r\n\
             os:{}\r\narch_bits:64\r\ntcp_port:{}\r\nuptime_in_seconds:{uptime_s}\r\n\r\n\
             # Clients\r\nconnected_clients:{clients}\r\n\r\n\
             # Persistence\r\nloading:0\r\n\r\n\
             # Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n\
             # Keyspace\r\ndb0:keys={keys},expires=0,avg_ttl=0\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            self.server.addr.port(),
        );
        Reply::Bulk(text.into_bytes())
    }

    /// `CONFIG GET|SET|RESETSTAT`: `notify-keyspace-events` is the one setting clients
    /// change; a few others answer with fixed values for clients that read them.
    fn config(&mut self, args: &OwnedArgs) -> Reply {
        let Some((subcommand, rest)) = args.split_first() else { return arity("config") };
        match (upper(subcommand).as_str(), rest) {
            ("GET", patterns) if !patterns.is_empty() => {
                let notify = lock(&self.server.notify).text.clone();
                let settings = [
                    ("notify-keyspace-events", notify),
                    ("databases", DATABASES.to_string()),
                    ("maxmemory", "0".into()),
                    ("save", String::new()),
                    ("appendonly", "no".into()),
                ];
                let pairs = settings
                    .into_iter()
                    .filter(|(name, _)| {
                        patterns
                            .iter()
                            .any(|p| super::glob::matches(&p.to_ascii_lowercase(), name.as_bytes()))
                    })
                    .map(|(name, value)| (Reply::text(name), Reply::text(value)));
                Reply::Map(pairs.collect())
            }
            ("SET", [name, value]) if name.eq_ignore_ascii_case(b"notify-keyspace-events") => {
                *lock(&self.server.notify) =
                    NotifyFlags { text: String::from_utf8_lossy(value).into_owned() };
                Reply::ok()
            }
            ("SET", [name, _]) => Reply::error(format!(
                "Unknown option or number of arguments for CONFIG SET - '{}'",
                String::from_utf8_lossy(name)
            )),
            ("RESETSTAT", []) => Reply::ok(),
            _ => syntax(),
        }
    }
}

/// `COMMAND [COUNT|DOCS|INFO]`: enough for redis-cli, which asks for docs to show hints.
fn command(args: &OwnedArgs) -> Reply {
    match args.first().map(|arg| upper(arg)).as_deref() {
        None => Reply::Array(Vec::new()),
        Some("COUNT") => Reply::Integer(0),
        Some("DOCS") => Reply::Map(Vec::new()),
        Some("INFO") => Reply::Array(args[1..].iter().map(|_| Reply::Null).collect()),
        Some(_) => Reply::error("COMMAND supports COUNT, DOCS and INFO here"),
    }
}
