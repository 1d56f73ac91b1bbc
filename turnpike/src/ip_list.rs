//! A configuration value of one or more IP addresses: `"192.0.2.1"` or
//! `["192.0.2.1", "192.0.2.2"]` in a file, `192.0.2.1,192.0.2.2` on the command line. Used by
//! `relay_ipv4` and `relay_ipv6`, which took one address before they took several, so files
//! written for one address keep working.

use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize};

/// One or more IP addresses (empty: none configured).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub(crate) struct IpList(pub Vec<IpAddr>);

impl<'de> Deserialize<'de> for IpList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            One(IpAddr),
            Many(Vec<IpAddr>),
        }
        Ok(
            match Form::deserialize(d).map_err(|_| {
                serde::de::Error::custom("expected an IP address or a list of IP addresses")
            })? {
                Form::One(ip) => Self(vec![ip]),
                Form::Many(v) => Self(v),
            },
        )
    }
}

impl std::str::FromStr for IpList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<IpAddr>()
                    .map_err(|e| format!("`{p}` is not an IP address: {e}"))
            })
            .collect::<Result<_, _>>()
            .map(IpList)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_or_a_list_in_files_and_a_comma_list_on_the_command_line() {
        #[derive(Deserialize)]
        struct K {
            a: IpList,
            b: IpList,
        }
        let k: K = serde_json::from_str(r#"{"a": "192.0.2.1", "b": ["127.0.0.2", "::1"]}"#)
            .expect("parses");
        assert_eq!(k.a.0, vec!["192.0.2.1".parse::<IpAddr>().expect("ip")]);
        assert_eq!(k.b.0.len(), 2);
        let l: IpList = "127.0.0.2, 127.0.0.3".parse().expect("parses");
        assert_eq!(l.0.len(), 2);
        assert!("127.0.0.2,nope"
            .parse::<IpList>()
            .unwrap_err()
            .contains("`nope`"));
        assert!(serde_json::from_str::<K>(r#"{"a": 3, "b": []}"#).is_err());
    }
}
