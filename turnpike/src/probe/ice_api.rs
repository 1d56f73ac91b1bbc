//! Credentials from an API before probing: `GET {api}/v1/ice-servers?apiKey=K` (Turnpike's
//! control plane, a W3C `{iceServers: [...]}` object), or where that path does not exist the
//! Metered-compatible `GET {api}/api/v1/turn/credentials?apiKey=K` (a bare `iceServers`
//! array). A URL with a path of its own is used as given. The key never appears in output.

use std::time::Duration;

use serde::Deserialize;

use super::client::Credentials;
use super::error::ProbeError;
use super::tls::Trust;

/// The paths tried, in order, when `--api` has no path.
const PATHS: [&str; 2] = ["/v1/ice-servers", "/api/v1/turn/credentials"];

/// One `RTCIceServer`: its URLs and, for TURN, the credential to use with them.
#[derive(Debug, Clone)]
pub(crate) struct IceServer {
    pub urls: Vec<String>,
    pub credentials: Option<Credentials>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Urls {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Entry {
    urls: Urls,
    username: Option<String>,
    credential: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Answer {
    W3c {
        #[serde(rename = "iceServers")]
        ice_servers: Vec<Entry>,
    },
    Array(Vec<Entry>),
}

/// The ICE servers the API hands out for `key`.
pub(crate) async fn fetch(
    api: &str,
    key: &str,
    trust: &Trust,
    limit: Duration,
) -> Result<Vec<IceServer>, ProbeError> {
    let base = reqwest::Url::parse(api)
        .map_err(|e| ProbeError::Api(format!("--api `{api}` is not a URL: {e}")))?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(ProbeError::Api(format!(
            "--api `{api}`: use an http:// or https:// URL"
        )));
    }
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(trust.client_config(&[b"http/1.1"])?)
        .timeout(limit)
        .build()
        .map_err(|e| ProbeError::Api(format!("HTTP client: {e}")))?;
    let paths: Vec<String> = match base.path() {
        "" | "/" => PATHS.iter().map(|p| p.to_string()).collect(),
        p => vec![p.to_string()],
    };
    let mut last = None;
    for path in &paths {
        let mut url = base.clone();
        url.set_path(path);
        url.query_pairs_mut().append_pair("apiKey", key);
        let resp = client
            .get(url)
            .bearer_auth(key)
            .send()
            .await
            .map_err(|e| ProbeError::Api(format!("GET {path}: {}", e.without_url())))?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| ProbeError::Api(format!("GET {path}: {}", e.without_url())))?;
        if status == reqwest::StatusCode::NOT_FOUND && paths.len() > 1 {
            last = Some(format!("GET {path}: 404"));
            continue;
        }
        if !status.is_success() {
            return Err(ProbeError::Api(format!(
                "GET {path}: {status}{}",
                error_message(&body)
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            )));
        }
        return parse(&body).map_err(|e| ProbeError::Api(format!("GET {path}: {e}")));
    }
    Err(ProbeError::Api(last.unwrap_or_else(|| {
        "no ICE-servers endpoint answered".to_string()
    })))
}

/// The ICE servers of an API answer: a W3C object or a bare array.
fn parse(body: &str) -> Result<Vec<IceServer>, String> {
    let answer: Answer = serde_json::from_str(body)
        .map_err(|e| format!("not an iceServers object or array ({e})"))?;
    let entries = match answer {
        Answer::W3c { ice_servers } => ice_servers,
        Answer::Array(a) => a,
    };
    Ok(entries
        .into_iter()
        .map(|e| IceServer {
            urls: match e.urls {
                Urls::One(u) => vec![u],
                Urls::Many(v) => v,
            },
            credentials: match (e.username, e.credential) {
                (Some(username), Some(password)) => Some(Credentials { username, password }),
                _ => None,
            },
        })
        .collect())
}

/// The message of an error answer: our `{"error": {"message"}}`, else the start of the body.
fn error_message(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    match &v["error"] {
        serde_json::Value::Object(o) => o.get("message")?.as_str().map(str::to_string),
        serde_json::Value::String(s) => Some(s.clone()),
        _ => v["message"].as_str().map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes() {
        let w3c = r#"{"iceServers":[{"urls":["stun:h:3478"]},
            {"urls":["turn:h:3478?transport=udp","turns:h:5349?transport=tcp"],
             "username":"1700000000:u","credential":"pw"}],"ttl":60,"expiresAt":1}"#;
        let s = parse(w3c).unwrap();
        assert_eq!(s.len(), 2);
        assert!(s[0].credentials.is_none());
        assert_eq!(s[1].urls.len(), 2);
        let c = s[1].credentials.as_ref().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("1700000000:u", "pw")
        );
        let metered =
            r#"[{"urls":"stun:h:80"},{"urls":"turn:h:80","username":"a","credential":"b"}]"#;
        let s = parse(metered).unwrap();
        assert_eq!(s[0].urls, ["stun:h:80"]);
        assert!(s[1].credentials.is_some());
        assert!(parse(r#"{"error":{"code":"x","message":"y"}}"#).is_err());
        assert_eq!(
            error_message(r#"{"error":{"code":"unauthorized","message":"unknown API key"}}"#)
                .as_deref(),
            Some("unknown API key")
        );
        assert_eq!(error_message("<html>"), None);
    }
}
