//! What the deployment recipes in `deploy/` rely on: under systemd (`Type=notify`), the node
//! sends `READY=1` on `NOTIFY_SOCKET` once ready and `STOPPING=1` when SIGTERM begins its
//! graceful shutdown, even when SIGTERM follows `READY=1` at once (before the node listened for
//! signals from its start, such a node sometimes died by SIGTERM's default action, with no
//! handoff). (`deploy/check.sh` validates the recipes themselves with their tools.)

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::{EXIT_TIMEOUT, Node, Process, READY_TIMEOUT, Scratch, free_addrs};

/// The next notification on `socket`; without one within `timeout`, a failure that says how
/// the node ended and what it printed and logged meanwhile.
#[track_caller]
fn next_datagram(socket: &UnixDatagram, timeout: Duration, process: &mut Process) -> String {
    socket.set_read_timeout(Some(timeout)).expect("set a read timeout");
    let mut buffer = [0u8; 512];
    match socket.recv(&mut buffer) {
        Ok(length) => String::from_utf8_lossy(&buffer[..length]).into_owned(),
        Err(error) => {
            while process.next_line(Duration::ZERO).is_some() {}
            let (status, seen) = (process.try_status(), process.seen().to_vec());
            panic!(
                "no notification within {timeout:?} ({error}); exit status: {status:?}; \
                 stdout: {seen:?}\n{}",
                process.log_tail()
            );
        }
    }
}

#[test]
fn the_node_tells_systemd_when_it_is_ready_and_when_it_stops() {
    let scratch = Scratch::new("sd_notify");
    let path = scratch.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    let addr = free_addrs(1).remove(0);
    let args = ["node", "--listen", &addr, "--join", &addr, "--name", "a"];
    let notify = path.to_string_lossy().into_owned();
    let mut process = Process::start("a", &args, &[("NOTIFY_SOCKET", &notify)], scratch.path());
    let ready = next_datagram(&socket, READY_TIMEOUT, &mut process);
    assert!(ready.lines().any(|line| line == "READY=1"), "{ready:?}");
    let mut node = Node::await_ready(process, None);
    node.process.terminate();
    let stopping = next_datagram(&socket, EXIT_TIMEOUT, &mut node.process);
    assert!(stopping.lines().any(|line| line == "STOPPING=1"), "{stopping:?}");
    let status = node.process.wait_exit(EXIT_TIMEOUT).expect("the node exits");
    assert!(status.success(), "{status:?}");
}
