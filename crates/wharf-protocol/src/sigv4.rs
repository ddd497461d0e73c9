//! AWS Signature Version 4 (header form), as the aws CLI, boto3 and the AWS
//! SDKs send it. One canonicalisation serves both [`verify`] (server) and
//! [`sign`] (agent and test clients).

use crate::AwsError;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue, Method, Uri};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use time::{
    format_description::FormatItem, macros::format_description, Duration, OffsetDateTime,
    PrimitiveDateTime,
};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const AMZ_DATE: &[FormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");
/// How far a request's clock may be from ours, as AWS allows.
pub const MAX_SKEW: Duration = Duration::minutes(15);

/// Characters SigV4 leaves unencoded: A-Z a-z 0-9 - _ . ~
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
const UNRESERVED_AND_SLASH: &AsciiSet = &UNRESERVED.remove(b'/');

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// What a verified signature tells the server about the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub access_key_id: String,
    pub region: String,
    pub service: String,
}

/// Verifies the `Authorization` header of a request. `secret_for` maps an
/// access key id to its secret (None: unknown key).
pub fn verify(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    secret_for: impl Fn(&str) -> Option<String>,
    now: OffsetDateTime,
) -> Result<Verified, AwsError> {
    let auth = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(AwsError::missing_authentication)?;
    let parsed = parse_authorization(auth)?;
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| AwsError::client("IncompleteSignatureException", "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."))?;
    let when = parse_amz_date(amz_date)?;
    if when < now - MAX_SKEW {
        return Err(AwsError::invalid_signature(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 15 min.)",
            format_amz_date(now - MAX_SKEW),
            format_amz_date(now)
        )));
    }
    if when > now + MAX_SKEW {
        return Err(AwsError::invalid_signature(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 15 min.)",
            format_amz_date(now + MAX_SKEW),
            format_amz_date(now)
        )));
    }
    if !amz_date.starts_with(&parsed.date) {
        return Err(AwsError::invalid_signature(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}'",
            parsed.date,
            &amz_date[..8.min(amz_date.len())]
        )));
    }
    if !parsed.signed_headers.iter().any(|h| h == "host") {
        return Err(AwsError::invalid_signature(
            "'Host' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    let secret = secret_for(&parsed.access_key_id).ok_or_else(AwsError::unrecognized_client)?;
    let payload_hash = payload_hash(headers, body);
    let canonical = canonical_request(method, uri, headers, &parsed.signed_headers, &payload_hash)?;
    let scope = format!(
        "{}/{}/{}/aws4_request",
        parsed.date, parsed.region, parsed.service
    );
    let expected = signature(
        &secret,
        &parsed.date,
        &parsed.region,
        &parsed.service,
        amz_date,
        &scope,
        &canonical,
    );
    if !constant_time_eq(expected.as_bytes(), parsed.signature.as_bytes()) {
        return Err(AwsError::invalid_signature(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ));
    }
    Ok(Verified {
        access_key_id: parsed.access_key_id,
        region: parsed.region,
        service: parsed.service,
    })
}

/// Signs a request in place: sets `host` (from the URI) if absent,
/// `x-amz-date` and `authorization`. Every header present is signed.
#[allow(clippy::too_many_arguments)]
pub fn sign(
    method: &Method,
    uri: &Uri,
    headers: &mut HeaderMap,
    body: &[u8],
    creds: &Credentials,
    region: &str,
    service: &str,
    now: OffsetDateTime,
) {
    if !headers.contains_key(http::header::HOST) {
        if let Some(authority) = uri.authority() {
            headers.insert(
                http::header::HOST,
                HeaderValue::from_str(authority.as_str()).expect("authority is a valid header"),
            );
        }
    }
    let amz_date = format_amz_date(now);
    headers.insert(
        "x-amz-date",
        HeaderValue::from_str(&amz_date).expect("date is ascii"),
    );
    let mut signed: Vec<String> = headers
        .keys()
        .map(|k| k.as_str().to_ascii_lowercase())
        .filter(|k| k != "authorization" && k != "user-agent")
        .collect();
    signed.sort();
    signed.dedup();
    let payload_hash = payload_hash(headers, body);
    let canonical = canonical_request(method, uri, headers, &signed, &payload_hash)
        .expect("signed headers are present");
    let date = &amz_date[..8];
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let sig = signature(
        &creds.secret_access_key,
        date,
        region,
        service,
        &amz_date,
        &scope,
        &canonical,
    );
    let value = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={}, Signature={sig}",
        creds.access_key_id,
        signed.join(";")
    );
    headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&value).expect("authorization is ascii"),
    );
}

pub fn format_amz_date(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(AMZ_DATE)
        .expect("formats")
}

fn parse_amz_date(s: &str) -> Result<OffsetDateTime, AwsError> {
    PrimitiveDateTime::parse(s, AMZ_DATE)
        .map(|t| t.assume_utc())
        .map_err(|_| {
            AwsError::client(
                "IncompleteSignatureException",
                format!("Date must be in ISO-8601 'basic format'. Got '{s}'."),
            )
        })
}

struct Authorization {
    access_key_id: String,
    date: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: String,
}

fn incomplete(msg: &str) -> AwsError {
    AwsError::client("IncompleteSignatureException", msg.to_string())
}

fn parse_authorization(value: &str) -> Result<Authorization, AwsError> {
    let rest = value.strip_prefix(ALGORITHM).ok_or_else(|| {
        incomplete("Authorization header requires the AWS4-HMAC-SHA256 algorithm.")
    })?;
    let (mut credential, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            sig = Some(v);
        }
    }
    let (credential, signed, sig) = match (credential, signed, sig) {
        (Some(c), Some(h), Some(s)) => (c, h, s),
        _ => {
            return Err(incomplete(
                "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.",
            ))
        }
    };
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 || scope[4] != "aws4_request" {
        return Err(incomplete(
            "Credential should be scoped to a valid region, not ''. Credential should be scoped correctly: 'KEY/DATE/REGION/SERVICE/aws4_request'.",
        ));
    }
    Ok(Authorization {
        access_key_id: scope[0].to_string(),
        date: scope[1].to_string(),
        region: scope[2].to_string(),
        service: scope[3].to_string(),
        signed_headers: signed
            .split(';')
            .map(|h| h.trim().to_ascii_lowercase())
            .collect(),
        signature: sig.to_string(),
    })
}

fn payload_hash(headers: &HeaderMap, body: &[u8]) -> String {
    headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| hex::encode(Sha256::digest(body)))
}

fn canonical_request(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    signed_headers: &[String],
    payload_hash: &str,
) -> Result<String, AwsError> {
    let path = if uri.path().is_empty() {
        "/"
    } else {
        uri.path()
    };
    let canonical_uri = utf8_percent_encode(path, UNRESERVED_AND_SLASH).to_string();
    let mut query: Vec<(String, String)> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode_query_part(k), encode_query_part(v))
        })
        .collect();
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut canonical_headers = String::new();
    for name in signed_headers {
        let values: Vec<String> = headers
            .get_all(name.as_str())
            .iter()
            .map(|v| collapse_whitespace(&String::from_utf8_lossy(v.as_bytes())))
            .collect();
        if values.is_empty() {
            return Err(AwsError::invalid_signature(format!(
                "The request signature we calculated does not match the signature you provided. Signed header '{name}' is missing."
            )));
        }
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(&values.join(","));
        canonical_headers.push('\n');
    }
    Ok(format!(
        "{method}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{}\n{payload_hash}",
        signed_headers.join(";")
    ))
}

fn encode_query_part(s: &str) -> String {
    let decoded = percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned();
    utf8_percent_encode(&decoded, UNRESERVED).to_string()
}

fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn signature(
    secret: &str,
    date: &str,
    region: &str,
    service: &str,
    amz_date: &str,
    scope: &str,
    canonical_request: &str,
) -> String {
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    hex::encode(hmac(&k_signing, string_to_sign.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn creds() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        }
    }

    /// The "get-vanilla" case of AWS's published SigV4 test suite.
    #[test]
    fn matches_aws_test_vector() {
        let now = datetime!(2015-08-30 12:36:00 UTC);
        let uri: Uri = "https://example.amazonaws.com/".parse().unwrap();
        let mut headers = HeaderMap::new();
        sign(
            &Method::GET,
            &uri,
            &mut headers,
            b"",
            &creds(),
            "us-east-1",
            "service",
            now,
        );
        let auth = headers[http::header::AUTHORIZATION].to_str().unwrap();
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    fn signed_post(now: OffsetDateTime) -> (Uri, HeaderMap, Vec<u8>) {
        let uri: Uri = "http://127.0.0.1:9070/".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amz-target",
            "AmazonEC2ContainerServiceV20141113.ListClusters"
                .parse()
                .unwrap(),
        );
        headers.insert("content-type", crate::JSON_1_1.parse().unwrap());
        let body = b"{}".to_vec();
        sign(
            &Method::POST,
            &uri,
            &mut headers,
            &body,
            &creds(),
            "eu-west-1",
            "ecs",
            now,
        );
        (uri, headers, body)
    }

    fn lookup(k: &str) -> Option<String> {
        (k == "AKIDEXAMPLE").then(|| creds().secret_access_key)
    }

    #[test]
    fn verify_accepts_own_signature_and_reports_region() {
        let now = OffsetDateTime::now_utc();
        let (uri, headers, body) = signed_post(now);
        let v = verify(&Method::POST, &uri, &headers, &body, lookup, now).unwrap();
        assert_eq!(v.region, "eu-west-1");
        assert_eq!(v.service, "ecs");
    }

    #[test]
    fn verify_rejects_tampered_body_unknown_key_and_stale_date() {
        let now = OffsetDateTime::now_utc();
        let (uri, headers, _) = signed_post(now);
        let e = verify(&Method::POST, &uri, &headers, b"{\"a\":1}", lookup, now).unwrap_err();
        assert_eq!(e.code, "InvalidSignatureException");

        let e = verify(&Method::POST, &uri, &headers, b"{}", |_| None, now).unwrap_err();
        assert_eq!(e.code, "UnrecognizedClientException");

        let e = verify(
            &Method::POST,
            &uri,
            &headers,
            b"{}",
            lookup,
            now + Duration::minutes(20),
        )
        .unwrap_err();
        assert_eq!(e.code, "InvalidSignatureException");
        assert!(e.message.starts_with("Signature expired"), "{}", e.message);

        let e = verify(&Method::POST, &uri, &HeaderMap::new(), b"{}", lookup, now).unwrap_err();
        assert_eq!(e.code, "MissingAuthenticationTokenException");
    }
}
