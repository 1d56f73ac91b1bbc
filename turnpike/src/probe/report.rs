//! The probe's results: one row per URL and transport, printed as a table or as JSON.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

/// How a probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Verdict {
    Ok,
    Fail,
}

/// One probed URL and transport.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub url: String,
    pub transport: &'static str,
    pub result: Verdict,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The address probed (after name resolution).
    pub server: Option<SocketAddr>,
    pub binding_rtt_ms: Option<f64>,
    pub allocate_ms: Option<f64>,
    pub relay_rtt_ms: Option<f64>,
    pub mapped: Option<SocketAddr>,
    pub relayed: Option<SocketAddr>,
    /// The server's SOFTWARE attribute, if it sent one.
    pub software: Option<String>,
}

impl Row {
    pub(crate) fn new(url: &str, transport: &'static str) -> Self {
        Self {
            url: url.to_string(),
            transport,
            result: Verdict::Ok,
            reason: None,
            server: None,
            binding_rtt_ms: None,
            allocate_ms: None,
            relay_rtt_ms: None,
            mapped: None,
            relayed: None,
            software: None,
        }
    }

    pub(crate) fn failed(mut self, reason: impl std::fmt::Display) -> Self {
        self.result = Verdict::Fail;
        self.reason = Some(reason.to_string());
        self
    }
}

/// Milliseconds with microsecond precision, for the JSON numbers.
pub(crate) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// Whether every row is ok.
pub(crate) fn all_ok(rows: &[Row]) -> bool {
    rows.iter().all(|r| r.result != Verdict::Fail)
}

/// The rows as JSON: `{"ok": bool, "results": [...]}`.
pub(crate) fn json(rows: &[Row]) -> String {
    #[derive(Serialize)]
    struct Doc<'a> {
        ok: bool,
        results: &'a [Row],
    }
    let doc = Doc {
        ok: all_ok(rows),
        results: rows,
    };
    serde_json::to_string_pretty(&doc).expect("rows serialize: plain strings and numbers")
}

/// The rows as an aligned text table; each failure's reason on the line below its row.
pub(crate) fn table(rows: &[Row]) -> String {
    let opt_ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1} ms"));
    let opt_addr = |v: Option<SocketAddr>| v.map_or_else(|| "-".to_string(), |a| a.to_string());
    let header = [
        "URL",
        "TRANSPORT",
        "RESULT",
        "BINDING",
        "ALLOCATE",
        "RELAY RTT",
        "MAPPED",
        "RELAYED",
    ]
    .map(str::to_string);
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.url.clone(),
                r.transport.to_string(),
                match r.result {
                    Verdict::Ok => "ok",
                    Verdict::Fail => "FAIL",
                }
                .to_string(),
                opt_ms(r.binding_rtt_ms),
                opt_ms(r.allocate_ms),
                opt_ms(r.relay_rtt_ms),
                opt_addr(r.mapped),
                opt_addr(r.relayed),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.len());
    for c in &cells {
        for (w, s) in widths.iter_mut().zip(c) {
            *w = (*w).max(s.chars().count());
        }
    }
    let line = |c: &[String; 8]| {
        let mut s = String::new();
        for (i, (cell, w)) in c.iter().zip(widths).enumerate() {
            if i + 1 == c.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(&header);
    out.push('\n');
    for (row, c) in rows.iter().zip(&cells) {
        out.push_str(&line(c));
        out.push('\n');
        if let Some(reason) = &row.reason {
            out.push_str(&format!("    {}: {reason}\n", c[2]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_json() {
        let mut good = Row::new("turn:127.0.0.1:3478?transport=udp", "udp");
        good.binding_rtt_ms = Some(ms(Duration::from_micros(412)));
        good.allocate_ms = Some(1.25);
        good.relay_rtt_ms = Some(0.3);
        good.mapped = Some("127.0.0.1:50000".parse().unwrap());
        good.relayed = Some("127.0.0.1:49152".parse().unwrap());
        let bad = Row::new("turns:127.0.0.1:5349?transport=tcp", "tls")
            .failed("TLS handshake failed: invalid peer certificate: UnknownIssuer");
        let rows = vec![good, bad];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("URL") && lines[0].ends_with("RELAYED"));
        assert!(lines[1].contains("  ok  ") && lines[1].contains("0.4 ms"));
        assert!(lines[1].ends_with("127.0.0.1:49152"));
        assert!(lines[2].contains("FAIL"));
        assert_eq!(
            lines[3],
            "    FAIL: TLS handshake failed: invalid peer certificate: UnknownIssuer"
        );
        assert_eq!(lines.len(), 4);
        // Columns line up: RESULT starts at the same offset on every row.
        let at = lines[0].find("RESULT").unwrap();
        assert_eq!(&lines[1][at..at + 2], "ok");
        assert_eq!(&lines[2][at..at + 4], "FAIL");
        assert!(!all_ok(&rows));
        assert!(all_ok(&rows[..1]));
        let j: serde_json::Value = serde_json::from_str(&json(&rows)).unwrap();
        assert_eq!(j["ok"], false);
        assert_eq!(j["results"][0]["result"], "ok");
        assert_eq!(j["results"][0]["binding_rtt_ms"], 0.412);
        assert_eq!(j["results"][0]["relayed"], "127.0.0.1:49152");
        assert_eq!(j["results"][1]["result"], "fail");
        assert!(j["results"][1]["reason"]
            .as_str()
            .unwrap()
            .starts_with("TLS handshake failed"));
        assert!(j["results"][0].get("reason").is_none());
    }
}
