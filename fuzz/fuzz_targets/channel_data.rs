#![no_main]
//! ChannelData and TCP stream framing: `cargo fuzz run channel_data`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| turnpike_proto::fuzzing::channel_data(data));
