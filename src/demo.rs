//! `chorus demo`: being written.

pub async fn run(_nodes: usize, _json: bool) -> i32 {
    eprintln!("chorus: the demo is not written yet");
    1
}
