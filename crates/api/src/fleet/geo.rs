//! Places on the globe: a region's location (`region_location`: `LAT,LON` in degrees, or a
//! city of [`CITIES`]), and the great-circle distance between two places.

/// Latitude and longitude in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Place {
    pub lat: f64,
    pub lon: f64,
}

/// Cities a region may be placed at by name (lower case; the usual cloud regions' cities).
pub const CITIES: &[(&str, f64, f64)] = &[
    ("amsterdam", 52.37, 4.90),
    ("ashburn", 39.04, -77.49),
    ("atlanta", 33.75, -84.39),
    ("bangalore", 12.97, 77.59),
    ("chicago", 41.88, -87.63),
    ("dallas", 32.78, -96.80),
    ("dubai", 25.20, 55.27),
    ("dublin", 53.35, -6.26),
    ("frankfurt", 50.11, 8.68),
    ("hong-kong", 22.32, 114.17),
    ("johannesburg", -26.20, 28.05),
    ("london", 51.51, -0.13),
    ("los-angeles", 34.05, -118.24),
    ("madrid", 40.42, -3.70),
    ("miami", 25.76, -80.19),
    ("milan", 45.46, 9.19),
    ("montreal", 45.50, -73.57),
    ("mumbai", 19.08, 72.88),
    ("new-york", 40.71, -74.01),
    ("oregon", 45.84, -119.70),
    ("paris", 48.86, 2.35),
    ("san-francisco", 37.77, -122.42),
    ("sao-paulo", -23.55, -46.63),
    ("seattle", 47.61, -122.33),
    ("seoul", 37.57, 126.98),
    ("singapore", 1.35, 103.82),
    ("stockholm", 59.33, 18.07),
    ("sydney", -33.87, 151.21),
    ("tokyo", 35.68, 139.69),
    ("toronto", 43.65, -79.38),
    ("warsaw", 52.23, 21.01),
    ("zurich", 47.38, 8.54),
];

impl Place {
    /// `LAT,LON` in degrees, or a city of [`CITIES`] (case and spaces ignored).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some((a, b)) = s.split_once(',') {
            let (lat, lon) = (a.trim().parse::<f64>(), b.trim().parse::<f64>());
            return match (lat, lon) {
                (Ok(lat), Ok(lon))
                    if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) =>
                {
                    Ok(Self { lat, lon })
                }
                _ => Err(format!(
                    "`{s}` is not `LAT,LON` in degrees (latitude -90 to 90, longitude -180 to 180)"
                )),
            };
        }
        let name = s.to_ascii_lowercase().replace([' ', '_'], "-");
        CITIES
            .iter()
            .find(|(c, _, _)| *c == name)
            .map(|&(_, lat, lon)| Self { lat, lon })
            .ok_or_else(|| {
                let known: Vec<&str> = CITIES.iter().map(|c| c.0).collect();
                format!(
                    "unknown city `{s}`: give `LAT,LON` or one of {}",
                    known.join(", ")
                )
            })
    }

    /// Great-circle distance in kilometres (haversine, mean Earth radius).
    pub fn km_to(self, o: Self) -> f64 {
        let (p1, p2) = (self.lat.to_radians(), o.lat.to_radians());
        let dp = p2 - p1;
        let dl = (o.lon - self.lon).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * 6371.0 * a.sqrt().min(1.0).asin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_parse_and_measure() {
        let fra = Place::parse("Frankfurt").unwrap();
        let nyc = Place::parse("40.71, -74.01").unwrap();
        let d = fra.km_to(nyc);
        assert!((6150.0..6250.0).contains(&d), "{d}");
        assert_eq!(fra.km_to(fra), 0.0);
        assert!(Place::parse("91,0").unwrap_err().contains("LAT,LON"));
        assert!(Place::parse("atlantis").unwrap_err().contains("frankfurt"));
        assert_eq!(
            Place::parse("new york").unwrap(),
            Place::parse("new-york").unwrap()
        );
    }
}
