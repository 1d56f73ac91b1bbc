//! Property tests: the parser never panics on arbitrary input, and whatever the writer produces
//! parses back to the same attributes.

use proptest::prelude::*;
use turnpike_stun::*;

proptest! {
    #[test]
    fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(m) = Message::parse(&data) {
            let _ = m.check_fingerprint();
            let _ = m.check_integrity(b"key");
            for a in m.attributes() {
                let _ = decode_xor_address(a.value, &m.transaction_id());
                let _ = decode_error_code(a.value);
            }
        }
        let _ = ChannelData::parse(&data);
        let _ = frame_len(&data);
    }

    #[test]
    fn parse_never_panics_with_valid_header(body in proptest::collection::vec(any::<u8>(), 0..300), method in 0u16..0x1000) {
        let mut data = vec![0u8; 20];
        let t = MessageType::new(method, Class::Request).to_u16();
        data[0..2].copy_from_slice(&t.to_be_bytes());
        let len = (body.len() & !3) as u16;
        data[2..4].copy_from_slice(&len.to_be_bytes());
        data[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        data.extend_from_slice(&body[..len as usize]);
        if let Ok(m) = Message::parse(&data) {
            prop_assert_eq!(m.method(), method);
            let _ = m.check_fingerprint();
            let _ = m.check_integrity(b"k");
        }
    }

    #[test]
    fn write_then_parse(attrs in proptest::collection::vec((0u16..0x7fff, proptest::collection::vec(any::<u8>(), 0..40)), 0..8),
                        tid in any::<[u8; 12]>()) {
        let mut buf = [0u8; 1024];
        let mut w = MessageWriter::new(&mut buf, MessageType::new(METHOD_BINDING, Class::Request), tid).unwrap();
        let attrs: Vec<_> = attrs.into_iter()
            .filter(|(t, _)| ![ATTR_MESSAGE_INTEGRITY, ATTR_MESSAGE_INTEGRITY_SHA256, ATTR_FINGERPRINT].contains(t))
            .collect();
        for (t, v) in &attrs { w.attr(*t, v).unwrap(); }
        let key = Key::from_slice(b"0123456789abcdef").unwrap();
        w.integrity(&key).unwrap();
        w.fingerprint().unwrap();
        let n = w.finish();
        let m = Message::parse_exact(&buf[..n]).unwrap();
        prop_assert!(m.check_integrity(key.as_bytes()));
        prop_assert!(m.check_fingerprint().unwrap());
        let got: Vec<_> = m.attributes().filter(|a| a.typ != ATTR_MESSAGE_INTEGRITY).map(|a| (a.typ, a.value.to_vec())).collect();
        prop_assert_eq!(got, attrs);
    }
}
