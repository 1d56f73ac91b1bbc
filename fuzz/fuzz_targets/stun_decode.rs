#![no_main]
//! STUN decoder and request handling: `cargo fuzz run stun_decode`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| turnpike_proto::fuzzing::stun_decode(data));
