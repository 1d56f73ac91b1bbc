//! Replays the fuzz seed corpus (`fuzz/corpus/<target>/*`) through the same entry points the
//! fuzz targets use, as an ordinary test: every file must go through without a panic.

use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("readable corpus directory").path();
        if path.is_file() {
            f(&std::fs::read(&path).expect("readable corpus file"));
            n += 1;
        }
    }
    n
}

#[test]
fn stun_decode_corpus() {
    assert!(replay("stun_decode", turnpike_proto::fuzzing::stun_decode) >= 10);
}

#[test]
fn channel_data_corpus() {
    assert!(replay("channel_data", turnpike_proto::fuzzing::channel_data) >= 5);
}
