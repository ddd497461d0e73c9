//! The API's keys (the account's root): given on the command line, read
//! from a file, or the published development pair — which is served on
//! loopback addresses only.

use anyhow::{bail, Context};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use wharf_protocol::sigv4::Credentials;

/// The addresses `listen` names.
pub fn resolve_listen(listen: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = listen
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve --listen {listen}"))?
        .collect();
    if addrs.is_empty() {
        bail!("--listen {listen} names no address");
    }
    Ok(addrs)
}

/// Refuses to serve the published development keys on anything but loopback.
pub fn refuse_dev_keys_off_loopback(listen: &str, addrs: &[SocketAddr]) -> anyhow::Result<()> {
    if let Some(open) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        bail!(
            "refusing to serve on {listen} ({open} is not a loopback address) with the published development keys: \
             anyone who can reach it could use them. Give keys of your own (--access-key-id/--secret-access-key, \
             WHARF_ACCESS_KEY_ID/WHARF_SECRET_ACCESS_KEY, or --credentials-file), or listen on 127.0.0.1"
        );
    }
    Ok(())
}

/// The root keys, and whether they are the development pair.
pub fn root_keys(
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    file: Option<&Path>,
    dev_key: &str,
    dev_secret: &str,
) -> anyhow::Result<(Vec<Credentials>, bool)> {
    let mut keys = vec![];
    if let (Some(a), Some(s)) = (access_key_id, secret_access_key) {
        keys.push(Credentials {
            access_key_id: a,
            secret_access_key: s,
        });
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read credentials file {}", path.display()))?;
        keys.extend(
            parse_credentials(&text)
                .with_context(|| format!("bad credentials file {}", path.display()))?,
        );
    }
    for k in &keys {
        if k.access_key_id.is_empty() || k.secret_access_key.is_empty() {
            bail!("an access key ID and its secret must not be empty");
        }
        if k.access_key_id.starts_with("AWAG") {
            bail!(
                "access key ID {} starts with AWAG, which agents' credentials use",
                k.access_key_id
            );
        }
    }
    let mut ids: Vec<&str> = keys.iter().map(|k| k.access_key_id.as_str()).collect();
    ids.sort();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        bail!("access key ID {} is given twice", w[0]);
    }
    if keys.is_empty() {
        return Ok((
            vec![Credentials {
                access_key_id: dev_key.into(),
                secret_access_key: dev_secret.into(),
            }],
            true,
        ));
    }
    Ok((keys, false))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    credentials: Vec<Entry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    access_key_id: String,
    secret_access_key: String,
}

/// TOML (`[[credentials]]` tables) or one `KEY SECRET` (or `KEY:SECRET`)
/// per line, `#` starting a comment.
pub fn parse_credentials(text: &str) -> anyhow::Result<Vec<Credentials>> {
    if text.contains("[[credentials]]") {
        let f: File = toml::from_str(text)?;
        return Ok(f
            .credentials
            .into_iter()
            .map(|e| Credentials {
                access_key_id: e.access_key_id,
                secret_access_key: e.secret_access_key,
            })
            .collect());
    }
    let mut out = vec![];
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (key, secret) = line
            .split_once(|c: char| c == ':' || c.is_whitespace())
            .map(|(k, s)| (k.trim(), s.trim()))
            .filter(|(k, s)| !k.is_empty() && !s.is_empty() && !s.contains(char::is_whitespace))
            .with_context(|| format!("line {}: expected `ACCESS_KEY_ID SECRET`", n + 1))?;
        out.push(Credentials {
            access_key_id: key.into(),
            secret_access_key: secret.into(),
        });
    }
    if out.is_empty() {
        bail!("no credentials in it");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lines_and_toml() {
        let lines =
            parse_credentials("# admins\nAKIAONE secret1\nAKIATWO:secret2  # ci\n\n").unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].access_key_id, "AKIATWO");
        assert_eq!(lines[1].secret_access_key, "secret2");
        let toml = parse_credentials(
            "[[credentials]]\naccess_key_id = \"A\"\nsecret_access_key = \"B\"\n[[credentials]]\naccess_key_id = \"C\"\nsecret_access_key = \"D\"\n",
        )
        .unwrap();
        assert_eq!(toml.len(), 2);
        assert!(parse_credentials("JUSTAKEY\n").is_err());
        assert!(parse_credentials("").is_err());
        assert!(parse_credentials("[[credentials]]\naccess_key_id = 1\n").is_err());
    }

    #[test]
    fn dev_keys_only_on_loopback() {
        let local = resolve_listen("127.0.0.1:0").unwrap();
        assert!(refuse_dev_keys_off_loopback("127.0.0.1:0", &local).is_ok());
        let v6 = resolve_listen("[::1]:0").unwrap();
        assert!(refuse_dev_keys_off_loopback("[::1]:0", &v6).is_ok());
        for open in ["0.0.0.0:9070", "[::]:9070", "192.0.2.1:9070"] {
            let addrs = resolve_listen(open).unwrap();
            assert!(
                refuse_dev_keys_off_loopback(open, &addrs).is_err(),
                "{open}"
            );
        }
    }

    #[test]
    fn keys_given_replace_the_dev_pair() {
        let (k, dev) = root_keys(None, None, None, "D", "S").unwrap();
        assert!(dev);
        assert_eq!(k[0].access_key_id, "D");
        let (k, dev) = root_keys(Some("A".into()), Some("B".into()), None, "D", "S").unwrap();
        assert!(!dev);
        assert_eq!(k.len(), 1);
        assert!(root_keys(Some("AWAGX".into()), Some("B".into()), None, "D", "S").is_err());
    }
}
