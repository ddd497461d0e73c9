//! A task definition's `secrets[].valueFrom` naming Secrets Manager: a
//! secret's ARN (full, with its six-character suffix, or partial), and
//! optionally `:json-key:version-stage:version-id` after it, as ECS reads it.

/// What ECS reads from one `valueFrom`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretReference {
    /// The secret's ARN as given (full or partial), without the selectors.
    pub secret_id: String,
    pub json_key: Option<String>,
    pub version_stage: Option<String>,
    pub version_id: Option<String>,
}

impl SecretReference {
    /// None if `value_from` is not a Secrets Manager secret ARN.
    pub fn parse(value_from: &str) -> Option<SecretReference> {
        // arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME[:key:stage:id]
        let parts: Vec<&str> = value_from.split(':').collect();
        if parts.len() < 7
            || parts.len() > 10
            || parts[0] != "arn"
            || parts[2] != "secretsmanager"
            || parts[5] != "secret"
            || parts[6].is_empty()
        {
            return None;
        }
        let field = |i: usize| {
            parts
                .get(i)
                .filter(|s| !s.is_empty())
                .map(|s| s.to_string())
        };
        Some(SecretReference {
            secret_id: parts[..7].join(":"),
            json_key: field(7),
            version_stage: field(8),
            version_id: field(9),
        })
    }

    /// The value of `json_key` in a secret's JSON text (ECS takes a string
    /// as it is, and anything else as its JSON).
    pub fn pick(&self, text: &str) -> Result<String, String> {
        let Some(key) = &self.json_key else {
            return Ok(text.to_string());
        };
        let doc: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| format!("secret value is not JSON, so no key '{key}' can be read: {e}"))?;
        match doc.get(key) {
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(other) => Ok(other.to_string()),
            None => Err(format!("retrieved secret did not contain json key {key}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_from_as_ecs_reads_it() {
        let r =
            SecretReference::parse("arn:aws:secretsmanager:us-east-1:1:secret:db-AbCdEf").unwrap();
        assert_eq!(
            r.secret_id,
            "arn:aws:secretsmanager:us-east-1:1:secret:db-AbCdEf"
        );
        assert_eq!(
            (r.json_key, r.version_stage, r.version_id),
            (None, None, None)
        );
        let r = SecretReference::parse("arn:aws:secretsmanager:us-east-1:1:secret:db:password::")
            .unwrap();
        assert_eq!(r.secret_id, "arn:aws:secretsmanager:us-east-1:1:secret:db");
        assert_eq!(r.json_key.as_deref(), Some("password"));
        let r =
            SecretReference::parse("arn:aws:secretsmanager:r:1:secret:db::AWSPREVIOUS:").unwrap();
        assert_eq!(
            (r.json_key, r.version_stage.as_deref()),
            (None, Some("AWSPREVIOUS"))
        );
        let r = SecretReference::parse("arn:aws:secretsmanager:r:1:secret:db:::v-1").unwrap();
        assert_eq!(r.version_id.as_deref(), Some("v-1"));
        assert!(SecretReference::parse("arn:aws:ssm:r:1:parameter/db").is_none());
        assert!(SecretReference::parse("db").is_none());
        assert!(SecretReference::parse("arn:aws:secretsmanager:r:1:secret:").is_none());
        assert!(SecretReference::parse("arn:aws:secretsmanager:r:1:secret:a:b:c:d:e").is_none());
    }

    #[test]
    fn a_json_key_picks_from_the_value() {
        let r = SecretReference::parse("arn:aws:secretsmanager:r:1:secret:db:password::").unwrap();
        assert_eq!(r.pick(r#"{"password":"p","port":5432}"#).unwrap(), "p");
        let port = SecretReference::parse("arn:aws:secretsmanager:r:1:secret:db:port::").unwrap();
        assert_eq!(
            port.pick(r#"{"password":"p","port":5432}"#).unwrap(),
            "5432"
        );
        assert!(r
            .pick(r#"{"user":"u"}"#)
            .unwrap_err()
            .contains("json key password"));
        assert!(r.pick("plain").is_err());
        let whole = SecretReference::parse("arn:aws:secretsmanager:r:1:secret:db").unwrap();
        assert_eq!(whole.pick("plain").unwrap(), "plain");
    }
}
