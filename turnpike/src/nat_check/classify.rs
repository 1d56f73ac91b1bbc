//! RFC 4787 behaviours from the RFC 5780 test results, and the NAT's common name.

use std::net::SocketAddr;

/// Mapping behaviour (RFC 4787 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Mapping {
    EndpointIndependent,
    AddressDependent,
    AddressAndPortDependent,
}

/// Filtering behaviour (RFC 4787 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Filtering {
    EndpointIndependent,
    AddressDependent,
    AddressAndPortDependent,
}

impl Mapping {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::EndpointIndependent => "endpoint-independent",
            Self::AddressDependent => "address-dependent",
            Self::AddressAndPortDependent => "address-and-port-dependent",
        }
    }
}

impl Filtering {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::EndpointIndependent => "endpoint-independent",
            Self::AddressDependent => "address-dependent",
            Self::AddressAndPortDependent => "address-and-port-dependent",
        }
    }
}

/// RFC 5780 §4.3: the mapped addresses of tests I (primary address and port), II (other
/// address, primary port) and III (other address and port).
pub(crate) fn mapping(one: SocketAddr, two: SocketAddr, three: SocketAddr) -> Mapping {
    if two == one {
        Mapping::EndpointIndependent
    } else if three == two {
        Mapping::AddressDependent
    } else {
        Mapping::AddressAndPortDependent
    }
}

/// RFC 5780 §4.4: whether test II's answer (CHANGE-REQUEST: change IP and port) and test III's
/// (change port) reached the client.
pub(crate) fn filtering(ip_and_port: bool, port_only: bool) -> Filtering {
    if ip_and_port {
        Filtering::EndpointIndependent
    } else if port_only {
        Filtering::AddressDependent
    } else {
        Filtering::AddressAndPortDependent
    }
}

/// The name people use for the combination (the classic RFC 3489 names, as RFC 4787 §3 relates
/// them).
pub(crate) fn common_name(nat: bool, m: Mapping, f: Filtering) -> &'static str {
    match (nat, m, f) {
        (false, _, Filtering::EndpointIndependent) => "no NAT (open internet)",
        (false, _, _) => "no NAT, firewall",
        (true, Mapping::EndpointIndependent, Filtering::EndpointIndependent) => "full cone",
        (true, Mapping::EndpointIndependent, Filtering::AddressDependent) => "restricted cone",
        (true, Mapping::EndpointIndependent, Filtering::AddressAndPortDependent) => {
            "port restricted cone"
        }
        (true, _, _) => "symmetric",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn mapping_from_three_tests() {
        let x = a("198.51.100.6:40000");
        assert_eq!(mapping(x, x, x), Mapping::EndpointIndependent);
        let y = a("198.51.100.6:40001");
        assert_eq!(mapping(x, y, y), Mapping::AddressDependent);
        assert_eq!(
            mapping(x, y, a("198.51.100.6:40002")),
            Mapping::AddressAndPortDependent
        );
    }

    #[test]
    fn filtering_from_two_tests() {
        assert_eq!(filtering(true, false), Filtering::EndpointIndependent);
        assert_eq!(filtering(true, true), Filtering::EndpointIndependent);
        assert_eq!(filtering(false, true), Filtering::AddressDependent);
        assert_eq!(filtering(false, false), Filtering::AddressAndPortDependent);
    }

    #[test]
    fn common_names() {
        use Filtering as F;
        use Mapping as M;
        assert_eq!(
            common_name(true, M::EndpointIndependent, F::EndpointIndependent),
            "full cone"
        );
        assert_eq!(
            common_name(true, M::EndpointIndependent, F::AddressDependent),
            "restricted cone"
        );
        assert_eq!(
            common_name(true, M::EndpointIndependent, F::AddressAndPortDependent),
            "port restricted cone"
        );
        assert_eq!(
            common_name(true, M::AddressAndPortDependent, F::AddressAndPortDependent),
            "symmetric"
        );
        assert_eq!(
            common_name(true, M::AddressDependent, F::EndpointIndependent),
            "symmetric"
        );
        assert_eq!(
            common_name(false, M::EndpointIndependent, F::EndpointIndependent),
            "no NAT (open internet)"
        );
        assert_eq!(
            common_name(false, M::EndpointIndependent, F::AddressAndPortDependent),
            "no NAT, firewall"
        );
    }
}
