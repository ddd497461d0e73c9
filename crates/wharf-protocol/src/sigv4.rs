//! AWS Signature Version 4, as the aws CLI, boto3 and the AWS SDKs send it:
//! in the `Authorization` header, or presigned in the URL's query string.
//! One canonicalisation serves both [`Presented::verify`] (server) and
//! [`sign`]/[`presign`] (agent and test clients).
//!
//! Verification binds everything a signature can bind: the body (its hash is
//! always computed from the bytes received; an `x-amz-content-sha256` that
//! disagrees is refused), the service in the credential scope (the caller
//! says which service the request is for), and the headers a service needs
//! signed (`host`, `x-amz-date`, and whatever [`Expect::signed`] adds, such
//! as `x-amz-target` for the JSON protocols).

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
/// What a presigned URL may put in the canonical request instead of a body
/// hash (`X-Amz-Content-Sha256=UNSIGNED-PAYLOAD`, as S3's do) when the body
/// was unknown at signing.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
const AMZ_DATE: &[FormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");
/// How far a request's clock may be from ours, as AWS allows.
pub const MAX_SKEW: Duration = Duration::minutes(15);
/// The longest a presigned URL may be valid, as AWS allows (a week).
pub const MAX_PRESIGN_SECS: i64 = 604_800;

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
    /// Whether the signature covers the body: always, unless a presigned URL
    /// said `X-Amz-Content-Sha256=UNSIGNED-PAYLOAD`.
    pub body_signed: bool,
}

/// What the service a request is for requires of its signature.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The service the credential scope must name (`ecs`, `logs`, …).
    pub service: &'a str,
    /// Headers that must be signed besides `host` (and `x-amz-date` in the
    /// header form), lower case.
    pub signed: &'a [&'a str],
}

/// How the signature travels.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Form {
    Header,
    /// Presigned: valid for `expires` seconds from the signing date; the
    /// body hash it names, if it names one.
    Query {
        expires: i64,
        content_sha256: Option<String>,
    },
}

/// A signature as a request presents it, parsed but not yet verified: the
/// server reads the access key from it, looks up the secret, then verifies.
#[derive(Debug, Clone)]
pub struct Presented {
    access_key_id: String,
    date: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: String,
    amz_date: String,
    when: OffsetDateTime,
    form: Form,
    /// `X-Amz-Security-Token` (header, or presigned query): temporary
    /// credentials' session token.
    security_token: Option<String>,
}

fn incomplete(msg: impl Into<String>) -> AwsError {
    AwsError::client("IncompleteSignatureException", msg)
}

/// The query string's parameters, decoded, in order.
fn query_params(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode_query_part(k), decode_query_part(v))
        })
        .collect()
}

/// Finds the signature a request carries: the `Authorization` header or a
/// presigned query string (never both, as AWS refuses).
pub fn presented(uri: &Uri, headers: &HeaderMap) -> Result<Presented, AwsError> {
    let params = query_params(uri);
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let auth = headers.get(http::header::AUTHORIZATION);
    let query_form = param("X-Amz-Algorithm").is_some() || param("X-Amz-Signature").is_some();
    let mut presented = match (auth, query_form) {
        (Some(_), true) => Err(AwsError::client(
            "InvalidRequest",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the Authorization header should be specified",
        )),
        (Some(auth), false) => {
            let auth = auth.to_str().map_err(|_| {
                incomplete("Authorization header is not valid ASCII.")
            })?;
            let (credential, signed, signature) = parse_authorization(auth)?;
            let amz_date = headers
                .get("x-amz-date")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."))?;
            Presented::new(credential, signed, signature, amz_date, Form::Header)
        }
        (None, true) => {
            let need = |name: &str| {
                param(name).ok_or_else(|| {
                    incomplete(format!(
                        "AWS query-string parameters must include '{name}'. Re-examine the query-string parameters."
                    ))
                })
            };
            if need("X-Amz-Algorithm")? != ALGORITHM {
                return Err(incomplete(
                    "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"",
                ));
            }
            let expires: i64 = need("X-Amz-Expires")?
                .parse()
                .ok()
                .filter(|s| (1..=MAX_PRESIGN_SECS).contains(s))
                .ok_or_else(|| {
                    incomplete(format!(
                        "X-Amz-Expires must be a number of seconds from 1 to {MAX_PRESIGN_SECS} (a week)."
                    ))
                })?;
            let form = Form::Query {
                expires,
                content_sha256: param("X-Amz-Content-Sha256").map(str::to_string),
            };
            Presented::new(
                need("X-Amz-Credential")?,
                need("X-Amz-SignedHeaders")?,
                need("X-Amz-Signature")?,
                need("X-Amz-Date")?,
                form,
            )
        }
        (None, false) => Err(AwsError::missing_authentication()),
    }?;
    presented.security_token = match headers.get("x-amz-security-token") {
        Some(v) => v.to_str().ok().map(str::to_string),
        None => param("X-Amz-Security-Token").map(str::to_string),
    };
    Ok(presented)
}

impl Presented {
    fn new(
        credential: &str,
        signed: &str,
        signature: &str,
        amz_date: &str,
        form: Form,
    ) -> Result<Self, AwsError> {
        let scope: Vec<&str> = credential.split('/').collect();
        if scope.len() != 5 || scope[4] != "aws4_request" || scope.iter().any(|s| s.is_empty()) {
            return Err(incomplete(format!(
                "Credential should be scoped correctly: 'KEY/DATE/REGION/SERVICE/aws4_request', not '{credential}'."
            )));
        }
        let when = parse_amz_date(amz_date)?;
        Ok(Presented {
            access_key_id: scope[0].to_string(),
            date: scope[1].to_string(),
            region: scope[2].to_string(),
            service: scope[3].to_string(),
            signed_headers: signed
                .split(';')
                .map(|h| h.trim().to_ascii_lowercase())
                .collect(),
            signature: signature.to_string(),
            amz_date: amz_date.to_string(),
            when,
            form,
            security_token: None,
        })
    }

    /// The session token of temporary credentials, if the request carries one.
    pub fn security_token(&self) -> Option<&str> {
        self.security_token.as_deref()
    }

    /// The access key the request claims to be signed with.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The service the credential scope names (what an awsQuery request,
    /// which has no target header, is routed by).
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Checks everything that needs no secret: the date (within the clock
    /// skew AWS allows, or the presigned URL's validity), the scope (its
    /// date, and the service the request is for), and the headers that
    /// must be signed.
    pub fn check(&self, expect: &Expect, now: OffsetDateTime) -> Result<(), AwsError> {
        match &self.form {
            Form::Header => {
                if self.when < now - MAX_SKEW {
                    return Err(AwsError::invalid_signature(format!(
                        "Signature expired: {} is now earlier than {} ({} - 15 min.)",
                        self.amz_date,
                        format_amz_date(now - MAX_SKEW),
                        format_amz_date(now)
                    )));
                }
            }
            Form::Query { expires, .. } => {
                // At the calendar's end, a week later is past any `now`.
                let until = self
                    .when
                    .checked_add(Duration::seconds(*expires))
                    .unwrap_or(self.when);
                if until < now {
                    return Err(AwsError::invalid_signature(format!(
                        "Signature expired: {} (X-Amz-Date + X-Amz-Expires) is now earlier than {}",
                        format_amz_date(until),
                        format_amz_date(now)
                    )));
                }
            }
        }
        if self.when > now + MAX_SKEW {
            return Err(AwsError::invalid_signature(format!(
                "Signature not yet current: {} is still later than {} ({} + 15 min.)",
                self.amz_date,
                format_amz_date(now + MAX_SKEW),
                format_amz_date(now)
            )));
        }
        if !self.amz_date.starts_with(&self.date) {
            return Err(AwsError::invalid_signature(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}'",
                self.date,
                &self.amz_date[..8]
            )));
        }
        if self.service != expect.service {
            return Err(AwsError::invalid_signature(format!(
                "Credential should be scoped to correct service: '{}'. ",
                expect.service
            )));
        }
        let mut required = vec!["host"];
        if self.form == Form::Header {
            required.push("x-amz-date");
        }
        required.extend_from_slice(expect.signed);
        for name in required {
            if !self.signed_headers.iter().any(|h| h == name) {
                return Err(AwsError::invalid_signature(format!(
                    "'{}' must be a 'SignedHeader' in the AWS Authorization.",
                    display_header(name)
                )));
            }
        }
        Ok(())
    }

    /// Verifies the signature with the secret of its access key, after
    /// [`Presented::check`]ing the rest; the body's hash is computed here.
    #[allow(clippy::too_many_arguments)]
    pub fn verify(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        secret: &str,
        expect: &Expect,
        now: OffsetDateTime,
    ) -> Result<Verified, AwsError> {
        self.check(expect, now)?;
        let computed = hex::encode(Sha256::digest(body));
        let mismatch = || {
            AwsError::invalid_signature(
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            )
        };
        let (payload_hash, body_signed) = match &self.form {
            Form::Header => {
                if let Some(claimed) = headers.get("x-amz-content-sha256") {
                    if claimed.as_bytes() != computed.as_bytes() {
                        return Err(mismatch());
                    }
                }
                (computed, true)
            }
            // The AWS SDKs presign the hash of the body (empty, for a URL
            // to be used as is); S3-style URLs may leave it unsigned.
            Form::Query { content_sha256, .. } => match content_sha256.as_deref() {
                None => (computed, true),
                Some(UNSIGNED_PAYLOAD) => (UNSIGNED_PAYLOAD.to_string(), false),
                Some(claimed) if claimed == computed => (computed, true),
                Some(_) => return Err(mismatch()),
            },
        };
        let query_form = matches!(self.form, Form::Query { .. });
        let canonical = canonical_request(
            method,
            uri,
            headers,
            &self.signed_headers,
            &payload_hash,
            query_form,
        )?;
        // `check` made sure the scope's date is the request's.
        let expected = signature(
            secret,
            &self.amz_date,
            &self.region,
            &self.service,
            &canonical,
        );
        if !constant_time_eq(expected.as_bytes(), self.signature.as_bytes()) {
            return Err(AwsError::invalid_signature(
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
            ));
        }
        Ok(Verified {
            access_key_id: self.access_key_id.clone(),
            region: self.region.clone(),
            service: self.service.clone(),
            body_signed,
        })
    }
}

/// `x-amz-target` as AWS spells it in messages: `X-Amz-Target`.
fn display_header(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Verifies a request in one step: `secret_for` maps an access key id to
/// its secret (None: unknown key).
pub fn verify(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    expect: &Expect,
    secret_for: impl Fn(&str) -> Option<String>,
    now: OffsetDateTime,
) -> Result<Verified, AwsError> {
    let p = presented(uri, headers)?;
    p.check(expect, now)?;
    let secret = secret_for(p.access_key_id()).ok_or_else(AwsError::unrecognized_client)?;
    p.verify(method, uri, headers, body, &secret, expect, now)
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
    set_host(uri, headers);
    let amz_date = format_amz_date(now);
    headers.insert(
        "x-amz-date",
        HeaderValue::from_str(&amz_date).expect("date is ascii"),
    );
    let signed = signed_names(headers);
    let payload_hash = hex::encode(Sha256::digest(body));
    let canonical = canonical_request(method, uri, headers, &signed, &payload_hash, false)
        .expect("signed headers are present");
    let scope = scope_of(&amz_date, region, service);
    let sig = signature(
        &creds.secret_access_key,
        &amz_date,
        region,
        service,
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

/// A presigned form of a request: the URI with the signature in its query
/// string, valid for `expires` seconds. Every header present (and `host`)
/// is signed, and the hash of `body`, as botocore presigns.
#[allow(clippy::too_many_arguments)]
pub fn presign(
    method: &Method,
    uri: &Uri,
    headers: &mut HeaderMap,
    body: &[u8],
    creds: &Credentials,
    region: &str,
    service: &str,
    now: OffsetDateTime,
    expires: i64,
) -> Uri {
    set_host(uri, headers);
    let amz_date = format_amz_date(now);
    let scope = scope_of(&amz_date, region, service);
    let signed = signed_names(headers);
    let mut query = uri.query().map(str::to_string).unwrap_or_default();
    for (k, v) in [
        ("X-Amz-Algorithm", ALGORITHM.to_string()),
        (
            "X-Amz-Credential",
            format!("{}/{scope}", creds.access_key_id),
        ),
        ("X-Amz-Date", amz_date.clone()),
        ("X-Amz-Expires", expires.to_string()),
        ("X-Amz-SignedHeaders", signed.join(";")),
    ] {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(&format!("{k}={}", utf8_percent_encode(&v, UNRESERVED)));
    }
    let unsigned: Uri = with_query(uri, &query);
    let payload_hash = hex::encode(Sha256::digest(body));
    let canonical = canonical_request(method, &unsigned, headers, &signed, &payload_hash, true)
        .expect("signed headers are present");
    let sig = signature(
        &creds.secret_access_key,
        &amz_date,
        region,
        service,
        &canonical,
    );
    with_query(uri, &format!("{query}&X-Amz-Signature={sig}"))
}

fn with_query(uri: &Uri, query: &str) -> Uri {
    let mut parts = uri.clone().into_parts();
    let path = uri.path();
    parts.path_and_query = Some(
        format!("{path}?{query}")
            .parse()
            .expect("an encoded query is a valid URI part"),
    );
    Uri::from_parts(parts).expect("same URI with another query")
}

fn set_host(uri: &Uri, headers: &mut HeaderMap) {
    if !headers.contains_key(http::header::HOST) {
        if let Some(authority) = uri.authority() {
            headers.insert(
                http::header::HOST,
                HeaderValue::from_str(authority.as_str()).expect("authority is a valid header"),
            );
        }
    }
}

fn signed_names(headers: &HeaderMap) -> Vec<String> {
    let mut signed: Vec<String> = headers
        .keys()
        .map(|k| k.as_str().to_ascii_lowercase())
        .filter(|k| k != "authorization" && k != "user-agent")
        .collect();
    signed.sort();
    signed.dedup();
    signed
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
            incomplete(format!(
                "Date must be in ISO-8601 'basic format'. Got '{s}'."
            ))
        })
}

/// The Credential, SignedHeaders and Signature of an `Authorization` header.
fn parse_authorization(value: &str) -> Result<(&str, &str, &str), AwsError> {
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
    match (credential, signed, sig) {
        (Some(c), Some(h), Some(s)) => Ok((c, h, s)),
        _ => Err(incomplete(
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.",
        )),
    }
}

fn canonical_request(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    signed_headers: &[String],
    payload_hash: &str,
    presigned: bool,
) -> Result<String, AwsError> {
    let path = if uri.path().is_empty() {
        "/"
    } else {
        uri.path()
    };
    let canonical_uri = utf8_percent_encode(path, UNRESERVED_AND_SLASH).to_string();
    let mut query: Vec<(String, String)> = query_params(uri)
        .into_iter()
        // A presigned URL's signature is not part of what it signs.
        .filter(|(k, _)| !(presigned && k == "X-Amz-Signature"))
        .map(|(k, v)| {
            (
                utf8_percent_encode(&k, UNRESERVED).to_string(),
                utf8_percent_encode(&v, UNRESERVED).to_string(),
            )
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

fn decode_query_part(s: &str) -> String {
    percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The credential scope of a signature made at `amz_date`.
fn scope_of(amz_date: &str, region: &str, service: &str) -> String {
    format!("{}/{region}/{service}/aws4_request", &amz_date[..8])
}

/// The signature of `canonical_request` made at `amz_date` (already
/// checked to be an ISO-8601 basic date) for `region` and `service`.
fn signature(
    secret: &str,
    amz_date: &str,
    region: &str,
    service: &str,
    canonical_request: &str,
) -> String {
    let date = &amz_date[..8];
    let scope = scope_of(amz_date, region, service);
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

/// Compares secrets without a timing that tells how much of them matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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

    const ECS: Expect = Expect {
        service: "ecs",
        signed: &["x-amz-target"],
    };

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

    fn signed_post_for(service: &str, now: OffsetDateTime) -> (Uri, HeaderMap, Vec<u8>) {
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
            service,
            now,
        );
        (uri, headers, body)
    }

    fn signed_post(now: OffsetDateTime) -> (Uri, HeaderMap, Vec<u8>) {
        signed_post_for("ecs", now)
    }

    fn lookup(k: &str) -> Option<String> {
        (k == "AKIDEXAMPLE").then(|| creds().secret_access_key)
    }

    fn check(
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        now: OffsetDateTime,
    ) -> Result<Verified, AwsError> {
        verify(&Method::POST, uri, headers, body, &ECS, lookup, now)
    }

    #[test]
    fn verify_accepts_own_signature_and_reports_region() {
        let now = OffsetDateTime::now_utc();
        let (uri, headers, body) = signed_post(now);
        let v = check(&uri, &headers, &body, now).unwrap();
        assert_eq!(v.region, "eu-west-1");
        assert_eq!(v.service, "ecs");
        assert!(v.body_signed);
    }

    #[test]
    fn verify_rejects_tampered_body_unknown_key_and_stale_date() {
        let now = OffsetDateTime::now_utc();
        let (uri, headers, _) = signed_post(now);
        let e = check(&uri, &headers, b"{\"a\":1}", now).unwrap_err();
        assert_eq!(e.code, "InvalidSignatureException");

        let e = verify(&Method::POST, &uri, &headers, b"{}", &ECS, |_| None, now).unwrap_err();
        assert_eq!(e.code, "UnrecognizedClientException");

        let e = check(&uri, &headers, b"{}", now + Duration::minutes(20)).unwrap_err();
        assert_eq!(e.code, "InvalidSignatureException");
        assert!(e.message.starts_with("Signature expired"), "{}", e.message);

        let e = check(&uri, &HeaderMap::new(), b"{}", now).unwrap_err();
        assert_eq!(e.code, "MissingAuthenticationTokenException");
    }

    /// The attack the header used to allow: a request signed with the
    /// original body's hash in `x-amz-content-sha256`, sent with another body.
    #[test]
    fn content_sha256_header_cannot_vouch_for_another_body() {
        let now = OffsetDateTime::now_utc();
        let uri: Uri = "http://127.0.0.1:9070/".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-target", "T.ListClusters".parse().unwrap());
        let original = b"{}";
        headers.insert(
            "x-amz-content-sha256",
            hex::encode(Sha256::digest(original)).parse().unwrap(),
        );
        sign(
            &Method::POST,
            &uri,
            &mut headers,
            original,
            &creds(),
            "us-east-1",
            "ecs",
            now,
        );
        assert!(check(&uri, &headers, original, now).is_ok());
        let e = check(&uri, &headers, b"{\"cluster\":\"evil\"}", now).unwrap_err();
        assert_eq!(e.code, "InvalidSignatureException");
        assert!(e.message.contains("x-amz-content-sha256"), "{}", e.message);
        // UNSIGNED-PAYLOAD is S3's and presigned URLs' alone.
        headers.insert("x-amz-content-sha256", UNSIGNED_PAYLOAD.parse().unwrap());
        assert!(check(&uri, &headers, original, now).is_err());
    }

    #[test]
    fn scope_must_name_the_service_the_request_is_for() {
        let now = OffsetDateTime::now_utc();
        let (uri, headers, body) = signed_post_for("s3", now);
        let e = check(&uri, &headers, &body, now).unwrap_err();
        assert_eq!(e.code, "InvalidSignatureException");
        assert_eq!(
            e.message,
            "Credential should be scoped to correct service: 'ecs'. "
        );
        let logs = Expect {
            service: "logs",
            signed: &[],
        };
        let (uri, headers, body) = signed_post_for("logs", now);
        assert!(verify(&Method::POST, &uri, &headers, &body, &logs, lookup, now).is_ok());
        assert!(check(&uri, &headers, &body, now).is_err());
    }

    /// Re-signs `headers` with only `names` in SignedHeaders.
    fn sign_only(names: &[&str], now: OffsetDateTime) -> (Uri, HeaderMap) {
        let uri: Uri = "http://127.0.0.1:9070/".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", "127.0.0.1:9070".parse().unwrap());
        headers.insert("x-amz-target", "T.ListClusters".parse().unwrap());
        headers.insert("x-amz-date", format_amz_date(now).parse().unwrap());
        let signed: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let hash = hex::encode(Sha256::digest(b"{}"));
        let canonical =
            canonical_request(&Method::POST, &uri, &headers, &signed, &hash, false).unwrap();
        let amz_date = format_amz_date(now);
        let scope = scope_of(&amz_date, "us-east-1", "ecs");
        let sig = signature(
            &creds().secret_access_key,
            &amz_date,
            "us-east-1",
            "ecs",
            &canonical,
        );
        let auth = format!(
            "{ALGORITHM} Credential=AKIDEXAMPLE/{scope}, SignedHeaders={}, Signature={sig}",
            signed.join(";")
        );
        headers.insert("authorization", auth.parse().unwrap());
        (uri, headers)
    }

    #[test]
    fn host_date_and_target_must_be_signed() {
        let now = OffsetDateTime::now_utc();
        let (uri, h) = sign_only(&["host", "x-amz-date", "x-amz-target"], now);
        assert!(check(&uri, &h, b"{}", now).is_ok());
        for (names, missing) in [
            (&["x-amz-date", "x-amz-target"][..], "'Host'"),
            (&["host", "x-amz-target"][..], "'X-Amz-Date'"),
            (&["host", "x-amz-date"][..], "'X-Amz-Target'"),
        ] {
            let (uri, h) = sign_only(names, now);
            let e = check(&uri, &h, b"{}", now).unwrap_err();
            assert!(e.message.starts_with(missing), "{names:?}: {}", e.message);
        }
    }

    #[test]
    fn a_signed_header_changed_in_flight_is_refused() {
        let now = OffsetDateTime::now_utc();
        let (uri, mut headers, body) = signed_post(now);
        headers.insert(
            "x-amz-target",
            "AmazonEC2ContainerServiceV20141113.DeleteCluster"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            check(&uri, &headers, &body, now).unwrap_err().code,
            "InvalidSignatureException"
        );
        // The date is in the string to sign: moving it breaks the signature.
        let (uri, mut headers, body) = signed_post(now);
        headers.insert(
            "x-amz-date",
            format_amz_date(now + Duration::minutes(1)).parse().unwrap(),
        );
        assert!(check(&uri, &headers, &body, now).is_err());
        // As does a query string added to a header-signed request.
        let (_, headers, body) = signed_post(now);
        let other: Uri = "http://127.0.0.1:9070/?x=1".parse().unwrap();
        assert!(check(&other, &headers, &body, now).is_err());
    }

    /// SigV4 has no nonce: AWS accepts a replay until the clock skew window
    /// closes, and not after.
    #[test]
    fn a_replay_is_refused_once_the_window_closes() {
        let signed_at = OffsetDateTime::now_utc();
        let (uri, headers, body) = signed_post(signed_at);
        assert!(check(&uri, &headers, &body, signed_at + Duration::minutes(14)).is_ok());
        let e = check(&uri, &headers, &body, signed_at + Duration::minutes(16)).unwrap_err();
        assert!(e.message.starts_with("Signature expired"), "{}", e.message);
        let e = check(&uri, &headers, &body, signed_at - Duration::minutes(16)).unwrap_err();
        assert!(
            e.message.starts_with("Signature not yet current"),
            "{}",
            e.message
        );
    }

    #[test]
    fn malformed_authorization_is_incomplete_not_a_panic() {
        let now = OffsetDateTime::now_utc();
        let uri: Uri = "http://h/".parse().unwrap();
        for auth in [
            "AWS4-HMAC-SHA256",
            "AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=host, Signature=x",
            "AWS4-HMAC-SHA256 Credential=////, SignedHeaders=host, Signature=x",
            "Basic Zm9vOmJhcg==",
        ] {
            let mut h = HeaderMap::new();
            h.insert("authorization", auth.parse().unwrap());
            h.insert("x-amz-date", format_amz_date(now).parse().unwrap());
            let e = check(&uri, &h, b"", now).unwrap_err();
            assert_eq!(e.code, "IncompleteSignatureException", "{auth}");
        }
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=x"
                .parse()
                .unwrap(),
        );
        h.insert("x-amz-date", "99999999T999999Z".parse().unwrap());
        assert_eq!(
            check(&uri, &h, b"", now).unwrap_err().code,
            "IncompleteSignatureException"
        );
    }

    fn presigned(now: OffsetDateTime, expires: i64) -> (Uri, HeaderMap) {
        let uri: Uri = "http://127.0.0.1:9070/v2/?foo=a%20b".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-target", "T.ListClusters".parse().unwrap());
        let uri = presign(
            &Method::GET,
            &uri,
            &mut headers,
            b"",
            &creds(),
            "us-east-1",
            "ecs",
            now,
            expires,
        );
        (uri, headers)
    }

    fn check_get(uri: &Uri, h: &HeaderMap, now: OffsetDateTime) -> Result<Verified, AwsError> {
        verify(&Method::GET, uri, h, b"", &ECS, lookup, now)
    }

    #[test]
    fn presigned_urls_verify_until_they_expire() {
        let now = OffsetDateTime::now_utc();
        let (uri, h) = presigned(now, 3600);
        let v = check_get(&uri, &h, now + Duration::minutes(59)).unwrap();
        assert!(
            v.body_signed,
            "a presigned URL signs the (empty) body's hash"
        );
        let e = verify(&Method::GET, &uri, &h, b"{}", &ECS, lookup, now).unwrap_err();
        assert_eq!(
            e.code, "InvalidSignatureException",
            "a body it did not sign"
        );
        let e = check_get(&uri, &h, now + Duration::minutes(61)).unwrap_err();
        assert!(e.message.starts_with("Signature expired"), "{}", e.message);
        // Tampering with any parameter, the path or a signed header fails.
        let s = uri.to_string();
        for bad in [
            s.replace("foo=a%20b", "foo=evil"),
            s.replace("X-Amz-Expires=3600", "X-Amz-Expires=7200"),
            s.replace("/v2/", "/v3/"),
        ] {
            let bad: Uri = bad.parse().unwrap();
            assert!(check_get(&bad, &h, now).is_err(), "{bad}");
        }
        let mut other = h.clone();
        other.insert("x-amz-target", "T.DeleteCluster".parse().unwrap());
        assert!(check_get(&uri, &other, now).is_err());
        // Presigned for another service, or both forms at once.
        let mut both = h.clone();
        both.insert("authorization", "AWS4-HMAC-SHA256 x".parse().unwrap());
        assert_eq!(
            check_get(&uri, &both, now).unwrap_err().code,
            "InvalidRequest"
        );
    }

    #[test]
    fn presigned_expiry_is_bounded_and_checked_without_overflow() {
        let now = OffsetDateTime::now_utc();
        for expires in ["0", "604801", "-1", "99999999999999999999", "x"] {
            let (uri, h) = presigned(now, 60);
            let bad: Uri = uri
                .to_string()
                .replace("X-Amz-Expires=60", &format!("X-Amz-Expires={expires}"))
                .parse()
                .unwrap();
            assert_eq!(
                check_get(&bad, &h, now).unwrap_err().code,
                "IncompleteSignatureException",
                "{expires}"
            );
        }
        // A date at the end of the calendar plus a week cannot overflow.
        let (uri, h) = presigned(now, 604_800);
        let end: Uri = uri
            .to_string()
            .replace(&format_amz_date(now), "99991231T235959Z")
            .parse()
            .unwrap();
        assert!(check_get(&end, &h, now).is_err());
    }
}
