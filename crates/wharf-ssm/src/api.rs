//! The operations. A handler checks the request, reads the parameter
//! record(s) with their revisions, and writes with one compare-and-swap
//! transaction, retried (from the read) when another write came first:
//! nothing is half-written on error.

use crate::filters::{Context, Filters};
use crate::names::{self, Reference, Selector};
use crate::records::{self, Millis, ParameterRecord, VersionRecord, MAX_VERSIONS};
use crate::{err, validation, Scope, Ssm};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::de::DeserializeOwned;
use wharf_model::ssm as m;
use wharf_protocol::AwsError;
use wharf_store::typed::{self, Versioned};
use wharf_store::{Compare, Op, RangeRequest, StoreError, Txn};

const MAX_ATTEMPTS: usize = 50;
const MAX_TAGS: usize = 50;
const MAX_BATCH: usize = 10;
const MAX_DESCRIPTION: usize = 1024;
const MAX_PATTERN: usize = 1024;
const MAX_KEY_ID: usize = 256;
const STANDARD_MAX: usize = 4096;
const ADVANCED_MAX: usize = 8192;
const DEFAULT_KEY: &str = "alias/aws/ssm";
/// Records read per store range while scanning.
const PAGE: usize = 128;
const TOKEN_PREFIX: &str = "wharf-ssm-1:";

/// One operation: `op` is the part of the target after `AmazonSSM.`, `now`
/// milliseconds since the epoch.
pub async fn dispatch(
    ssm: &Ssm,
    scope: &Scope,
    now: i64,
    op: &str,
    body: &[u8],
) -> Result<Vec<u8>, AwsError> {
    let api = Api::new(ssm, scope, now);
    macro_rules! op {
        ($f:ident) => {{
            let request = decode(body)?;
            let response = api.$f(request).await?;
            wharf_protocol::json::encode(&response)
        }};
    }
    match op {
        "PutParameter" => op!(put_parameter),
        "GetParameter" => op!(get_parameter),
        "GetParameters" => op!(get_parameters),
        "GetParametersByPath" => op!(get_parameters_by_path),
        "DescribeParameters" => op!(describe_parameters),
        "GetParameterHistory" => op!(get_parameter_history),
        "LabelParameterVersion" => op!(label_parameter_version),
        "UnlabelParameterVersion" => op!(unlabel_parameter_version),
        "DeleteParameter" => op!(delete_parameter),
        "DeleteParameters" => op!(delete_parameters),
        "AddTagsToResource" => op!(add_tags_to_resource),
        "RemoveTagsFromResource" => op!(remove_tags_from_resource),
        "ListTagsForResource" => op!(list_tags_for_resource),
        _ => Err(AwsError::unknown_operation(&format!(
            "{}.{op}",
            m::TARGET_PREFIX
        ))),
    }
}

/// The JSON body as the request; a missing required member is SSM's
/// `ValidationException`.
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, AwsError> {
    wharf_protocol::json::decode(body).map_err(|e| {
        if e.code == "InvalidParameterException" {
            validation(e.message)
        } else {
            e
        }
    })
}

fn from_store(e: StoreError) -> AwsError {
    tracing::error!(error = %e, "ssm: store failure");
    err("InternalServerError", "An internal error occurred.")
}

fn contention() -> AwsError {
    err(
        "TooManyUpdates",
        "There are concurrent updates for a resource that supports one update at a time.",
    )
}

fn not_found(name: &str) -> AwsError {
    err("ParameterNotFound", format!("Parameter {name} not found."))
}

fn seconds(ms: Millis) -> f64 {
    ms as f64 / 1000.0
}

fn constraint(at: &str, what: &str) -> AwsError {
    validation(format!(
        "1 validation error detected: Value at '{at}' failed to satisfy constraint: {what}"
    ))
}

/// `MaxResults` checked against `lo..=hi`, or `default`.
fn max_results(given: Option<i32>, hi: i32, default: usize) -> Result<usize, AwsError> {
    match given {
        None => Ok(default),
        Some(n) if n < 1 => Err(validation(format!(
            "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value greater than or equal to 1"
        ))),
        Some(n) if n > hi => Err(validation(format!(
            "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to {hi}"
        ))),
        Some(n) => Ok(usize::try_from(n).unwrap_or(default)),
    }
}

fn token(position: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{TOKEN_PREFIX}{position}"))
}

fn untoken(given: &str) -> Result<String, AwsError> {
    let bad = || err("InvalidNextToken", "The specified token isn't valid.");
    let bytes = URL_SAFE_NO_PAD.decode(given).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    text.strip_prefix(TOKEN_PREFIX)
        .map(str::to_string)
        .ok_or_else(bad)
}

fn check_labels(labels: &[String]) -> Result<(), AwsError> {
    if labels.is_empty() || labels.len() > MAX_BATCH {
        return Err(constraint(
            "labels",
            "Member must have length less than or equal to 10 and greater than or equal to 1",
        ));
    }
    if labels
        .iter()
        .any(|l| l.is_empty() || l.chars().count() > names::MAX_LABEL)
    {
        return Err(constraint(
            "labels",
            "Member must have length less than or equal to 100 and greater than or equal to 1",
        ));
    }
    Ok(())
}

fn tag_char(c: char) -> bool {
    c.is_alphanumeric()
        || c == ' '
        || (c.is_whitespace() && !c.is_control())
        || matches!(c, '_' | '.' | ':' | '/' | '=' | '+' | '-' | '@')
}

fn check_tag_key(key: &str) -> Result<(), AwsError> {
    if key.is_empty() || key.chars().count() > 128 || !key.chars().all(tag_char) {
        return Err(constraint(
            "tags.member.key",
            "Member must have length between 1 and 128 and satisfy regular expression pattern: ^([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)$",
        ));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(validation(format!(
            "Tag key {key} is not valid: tag keys beginning with aws: are reserved for AWS use."
        )));
    }
    Ok(())
}

fn check_tags(tags: &[m::Tag]) -> Result<(), AwsError> {
    for t in tags {
        check_tag_key(&t.key)?;
        if t.value.chars().count() > 256 || !t.value.chars().all(tag_char) {
            return Err(constraint(
                "tags.member.value",
                "Member must have length less than or equal to 256 and satisfy regular expression pattern: ^([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)$",
            ));
        }
    }
    Ok(())
}

/// Sets each tag (a key given again takes the later value).
fn merge_tags(into: &mut Vec<(String, String)>, tags: &[m::Tag]) -> Result<(), AwsError> {
    for t in tags {
        match into.iter_mut().find(|(k, _)| *k == t.key) {
            Some((_, v)) => v.clone_from(&t.value),
            None => into.push((t.key.clone(), t.value.clone())),
        }
    }
    if into.len() > MAX_TAGS {
        return Err(err(
            "TooManyTagsError",
            format!("A parameter can have at most {MAX_TAGS} tags."),
        ));
    }
    Ok(())
}

fn compile(pattern: &str) -> Result<regex_lite::Regex, AwsError> {
    regex_lite::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .nest_limit(64)
        .build()
        .map_err(|_| {
            err(
                "InvalidAllowedPatternException",
                format!("The allowed pattern {pattern} is not a valid regular expression."),
            )
        })
}

/// The tier a version is kept in, for a value of `size` bytes.
fn choose_tier(
    requested: Option<&m::ParameterTier>,
    previous: Option<&str>,
    size: usize,
) -> Result<&'static str, AwsError> {
    let was_advanced = previous == Some("Advanced");
    let advanced = match requested {
        Some(m::ParameterTier::Standard) => {
            if was_advanced {
                return Err(validation(
                    "This parameter uses the advanced-parameter tier. You can't downgrade a parameter from the advanced-parameter tier to the standard-parameter tier. If necessary, you can delete the advanced parameter and recreate it as a standard parameter.",
                ));
            }
            false
        }
        Some(m::ParameterTier::Advanced) => true,
        Some(m::ParameterTier::IntelligentTiering) => was_advanced || size > STANDARD_MAX,
        Some(m::ParameterTier::Unknown(t)) => {
            return Err(validation(format!(
                "1 validation error detected: Value '{t}' at 'tier' failed to satisfy constraint: Member must satisfy enum value set: [Advanced, Intelligent-Tiering, Standard]"
            )))
        }
        None => was_advanced,
    };
    if !advanced && size > STANDARD_MAX {
        return Err(validation(format!(
            "Standard tier parameters support a maximum parameter value of {STANDARD_MAX} characters. To create a larger parameter value, upgrade the parameter to use the advanced-parameter tier."
        )));
    }
    if size > ADVANCED_MAX {
        return Err(validation(format!(
            "Advanced tier parameters support a maximum parameter value of {ADVANCED_MAX} characters."
        )));
    }
    Ok(if advanced { "Advanced" } else { "Standard" })
}

/// `DataType`: only `text` is served.
fn check_data_type(given: Option<&str>) -> Result<Option<String>, AwsError> {
    match given {
        None | Some("") => Ok(None),
        Some("text") => Ok(Some("text".into())),
        Some("aws:ec2:image") => Err(validation(
            "DataType aws:ec2:image is not supported: this Parameter Store has no EC2 to validate AMI IDs against. Use DataType text.",
        )),
        Some(
            t @ ("aws:ssm:integration" | "aws:region" | "aws:account:id" | "boolean"
            | "integer" | "float" | "binary" | "hostname" | "email" | "ipv4-address"
            | "ipv6-address" | "url" | "json" | "jsonc"),
        ) => Err(validation(format!(
            "DataType {t} is not supported by this Parameter Store. Use DataType text."
        ))),
        Some(t) => Err(validation(format!(
            "The following data type is not supported: {t}. Supported data types are: text."
        ))),
    }
}

fn check_type(t: &m::ParameterType) -> Result<(), AwsError> {
    match t {
        m::ParameterType::Unknown(t) => Err(validation(format!(
            "1 validation error detected: Value '{t}' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [SecureString, StringList, String]"
        ))),
        _ => Ok(()),
    }
}

fn check_resource_type(t: &m::ResourceTypeForTagging) -> Result<(), AwsError> {
    match t {
        m::ResourceTypeForTagging::Parameter => Ok(()),
        other => Err(err(
            "InvalidResourceType",
            format!(
                "The resource type {other} is not valid here: this service tags only resources of type Parameter."
            ),
        )),
    }
}

pub(crate) struct Api<'a> {
    ssm: &'a Ssm,
    scope: &'a Scope,
    now: Millis,
}

impl<'a> Api<'a> {
    pub(crate) fn new(ssm: &'a Ssm, scope: &'a Scope, now: Millis) -> Api<'a> {
        Api { ssm, scope, now }
    }

    fn key(&self, name: &str) -> String {
        records::key(&self.scope.region, name)
    }

    fn user(&self) -> String {
        format!("arn:aws:iam::{}:root", self.scope.account)
    }

    fn bound(&self, name: &str, version: i64) -> String {
        format!("{}#{version}", names::arn(self.scope, name))
    }

    fn seal(&self, name: &str, version: i64, value: &str) -> String {
        STANDARD.encode(
            self.ssm
                .sealer
                .seal(&self.bound(name, version), value.as_bytes()),
        )
    }

    fn open(&self, name: &str, v: &VersionRecord) -> Result<String, AwsError> {
        let broken = || {
            tracing::error!(
                parameter = name,
                version = v.version,
                "ssm: a stored value does not open"
            );
            err("InternalServerError", "An internal error occurred.")
        };
        let sealed = STANDARD.decode(&v.sealed).map_err(|_| broken())?;
        let plain = self
            .ssm
            .sealer
            .open(&self.bound(name, v.version), &sealed)
            .map_err(|_| broken())?;
        String::from_utf8(plain).map_err(|_| broken())
    }

    /// The value as a read returns it: a SecureString without decryption
    /// as its opaque ciphertext (the base64 of the sealed bytes).
    fn shown_value(
        &self,
        name: &str,
        v: &VersionRecord,
        decrypt: bool,
    ) -> Result<String, AwsError> {
        if v.kind == "SecureString" && !decrypt {
            Ok(v.sealed.clone())
        } else {
            self.open(name, v)
        }
    }

    async fn get(&self, name: &str) -> Result<Option<Versioned<ParameterRecord>>, AwsError> {
        let found = typed::get::<ParameterRecord>(&*self.ssm.store, &self.key(name))
            .await
            .map_err(from_store)?;
        Ok(found.filter(|v| !v.value.versions.is_empty()))
    }

    async fn commit(&self, txn: Txn) -> Result<bool, AwsError> {
        typed::commit(&*self.ssm.store, txn)
            .await
            .map_err(from_store)
    }

    /// The parameter a reference names, if it exists.
    async fn find(&self, r: &Reference) -> Result<Option<Versioned<ParameterRecord>>, AwsError> {
        for name in &r.candidates {
            if let Some(found) = self.get(name).await? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The parameter a name (or ARN) without a selector names.
    async fn need(&self, raw: &str) -> Result<Versioned<ParameterRecord>, AwsError> {
        let r = names::reference(self.scope, raw, false)?;
        self.find(&r)
            .await?
            .ok_or_else(|| not_found(names::trim(raw)))
    }

    fn select<'r>(
        &self,
        record: &'r ParameterRecord,
        selector: Option<&Selector>,
    ) -> Result<&'r VersionRecord, AwsError> {
        let found = match selector {
            None => record.current(),
            Some(Selector::Version(n)) => record.version(*n),
            Some(Selector::Label(l)) => record.labelled(l),
        };
        found.ok_or_else(|| {
            let what = match selector {
                Some(Selector::Label(l)) => format!("label {l}"),
                Some(Selector::Version(n)) => format!("version {n}"),
                None => "a version".into(),
            };
            err(
                "ParameterVersionNotFound",
                format!(
                    "Systems Manager could not find {what} of {}. Verify the version and try again.",
                    record.name
                ),
            )
        })
    }

    fn parameter_out(
        &self,
        record: &ParameterRecord,
        v: &VersionRecord,
        decrypt: bool,
        selector: Option<&Selector>,
    ) -> Result<m::Parameter, AwsError> {
        Ok(m::Parameter {
            name: Some(record.name.clone()),
            r#type: Some(m::ParameterType::from(v.kind.as_str())),
            value: Some(self.shown_value(&record.name, v, decrypt)?),
            version: Some(v.version),
            selector: selector.map(Selector::wire),
            source_result: None,
            last_modified_date: Some(seconds(v.modified)),
            arn: Some(names::arn(self.scope, &record.name)),
            data_type: Some(v.data_type.clone()),
        })
    }

    fn metadata_out(&self, record: &ParameterRecord, v: &VersionRecord) -> m::ParameterMetadata {
        m::ParameterMetadata {
            name: Some(record.name.clone()),
            arn: Some(names::arn(self.scope, &record.name)),
            r#type: Some(m::ParameterType::from(v.kind.as_str())),
            key_id: v.key_id.clone(),
            last_modified_date: Some(seconds(v.modified)),
            last_modified_user: Some(v.user.clone()),
            description: v.description.clone(),
            allowed_pattern: v.allowed_pattern.clone(),
            version: Some(v.version),
            tier: Some(m::ParameterTier::from(v.tier.as_str())),
            policies: Some(Vec::new()),
            data_type: Some(v.data_type.clone()),
        }
    }

    /// Reads the records under `prefix` after `start_after` in key order,
    /// keeping what `f` makes of them, until `max` are kept and one more is
    /// known to exist. Returns them (with their names) and whether there
    /// are more.
    async fn scan<T>(
        &self,
        prefix: &str,
        start_after: Option<String>,
        max: usize,
        mut f: impl FnMut(&ParameterRecord) -> Result<Option<T>, AwsError>,
    ) -> Result<(Vec<(String, T)>, bool), AwsError> {
        let mut out = Vec::new();
        let mut start_after = start_after;
        loop {
            let resp = self
                .ssm
                .store
                .range(RangeRequest {
                    prefix: prefix.to_string(),
                    start_after: start_after.take(),
                    limit: Some(PAGE),
                })
                .await
                .map_err(from_store)?;
            start_after = resp.kvs.last().map(|kv| kv.key.clone());
            for kv in &resp.kvs {
                let record: ParameterRecord =
                    typed::decode(&kv.key, &kv.value).map_err(from_store)?;
                if record.versions.is_empty() {
                    continue;
                }
                if let Some(item) = f(&record)? {
                    if out.len() == max {
                        return Ok((out, true));
                    }
                    out.push((record.name.clone(), item));
                }
            }
            if !resp.more {
                return Ok((out, false));
            }
        }
    }

    /// A page of `scan` as `(items, NextToken)`.
    async fn page<T>(
        &self,
        prefix: &str,
        next_token: Option<&str>,
        max: usize,
        valid_after: impl Fn(&str) -> bool,
        f: impl FnMut(&ParameterRecord) -> Result<Option<T>, AwsError>,
    ) -> Result<(Vec<T>, Option<String>), AwsError> {
        let start_after = match next_token {
            None => None,
            Some(t) => {
                let name = untoken(t)?;
                if !valid_after(&name) {
                    return Err(err("InvalidNextToken", "The specified token isn't valid."));
                }
                Some(self.key(&name))
            }
        };
        let (items, more) = self.scan(prefix, start_after, max, f).await?;
        let next = if more {
            items.last().map(|(name, _)| token(name))
        } else {
            None
        };
        Ok((items.into_iter().map(|(_, t)| t).collect(), next))
    }

    pub(crate) async fn value(&self, reference: &str) -> Result<String, AwsError> {
        let r = names::reference(self.scope, reference, true)?;
        let found = self
            .find(&r)
            .await?
            .ok_or_else(|| not_found(names::trim(reference)))?;
        let v = self.select(&found.value, r.selector.as_ref())?;
        self.open(&found.value.name, v)
    }

    // ---- PutParameter ----

    async fn put_parameter(
        &self,
        r: m::PutParameterRequest,
    ) -> Result<m::PutParameterResult, AwsError> {
        let name = names::check_new(self.scope, &r.name)?;
        let overwrite = r.overwrite.unwrap_or(false);
        if overwrite && r.tags.is_some() {
            return Err(validation(
                "Invalid request: tags and overwrite can't be used together. To create a parameter with tags, please remove overwrite flag. To update tags for an existing parameter, please use AddTagsToResource or RemoveTagsFromResource.",
            ));
        }
        if let Some(p) = r.policies.as_deref() {
            let p = p.trim();
            if !p.is_empty() && p != "[]" {
                return Err(validation(
                    "Parameter policies (Expiration, ExpirationNotification, NoChangeNotification) are not supported by this Parameter Store.",
                ));
            }
        }
        let data_type = check_data_type(r.data_type.as_deref())?;
        if let Some(t) = &r.r#type {
            check_type(t)?;
        }
        if let Some(m::ParameterTier::Unknown(_)) = &r.tier {
            choose_tier(r.tier.as_ref(), None, 0)?;
        }
        if r.value.is_empty() {
            return Err(constraint(
                "value",
                "Member must have length greater than or equal to 1",
            ));
        }
        if let Some(open) = r.value.find("{{") {
            if r.value[open..].contains("}}") {
                return Err(validation(
                    "Parameter value can't nest another parameter. Do not use \"{{}}\" in the value.",
                ));
            }
        }
        if r.description
            .as_ref()
            .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION)
        {
            return Err(constraint(
                "description",
                "Member must have length less than or equal to 1024",
            ));
        }
        if let Some(p) = &r.allowed_pattern {
            if p.chars().count() > MAX_PATTERN {
                return Err(constraint(
                    "allowedPattern",
                    "Member must have length less than or equal to 1024",
                ));
            }
            compile(p)?;
        }
        if let Some(k) = &r.key_id {
            if k.is_empty()
                || k.chars().count() > MAX_KEY_ID
                || !k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '_' | '-'))
            {
                return Err(constraint(
                    "keyId",
                    "Member must have length between 1 and 256 and satisfy regular expression pattern: ^([a-zA-Z0-9:/_-]+)$",
                ));
            }
        }
        let tags = r.tags.clone().unwrap_or_default();
        check_tags(&tags)?;
        let mut new_tags = Vec::new();
        merge_tags(&mut new_tags, &tags)?;

        // `a` and `/a` share an ARN: only one of them may exist.
        let twin = match name.strip_prefix('/') {
            Some(rest) if !rest.contains('/') => Some(rest.to_string()),
            Some(_) => None,
            None => Some(format!("/{name}")),
        };
        for _ in 0..MAX_ATTEMPTS {
            let existing = self.get(&name).await?;
            let previous = existing.as_ref().and_then(|e| e.value.current());
            if existing.is_some() && !overwrite {
                return Err(err(
                    "ParameterAlreadyExists",
                    "The parameter already exists. To overwrite this value, set the overwrite option in the request to true.",
                ));
            }
            if existing.is_none() {
                if let Some(twin) = &twin {
                    if self.get(twin).await?.is_some() {
                        return Err(err(
                            "ParameterAlreadyExists",
                            format!(
                                "The parameter {twin} already exists, and has the same ARN ({}) as {name} would have.",
                                names::arn(self.scope, &name)
                            ),
                        ));
                    }
                }
            }
            let kind = match (&r.r#type, previous) {
                (Some(t), _) => t.as_str().to_string(),
                (None, Some(p)) => p.kind.clone(),
                (None, None) => {
                    return Err(validation(
                        "A parameter type is required when you create a parameter.",
                    ))
                }
            };
            let secure = kind == "SecureString";
            let key_id = match (&r.key_id, secure) {
                (Some(_), false) => {
                    return Err(validation(format!(
                        "KeyId applies only to SecureString parameters; {name} is of type {kind}."
                    )))
                }
                // There is no KMS: a key of one's own would be ignored.
                (Some(k), true) if k != DEFAULT_KEY && k != "aws/ssm" => {
                    return Err(validation(format!(
                        "KeyId {k} is not supported: Wharf has no KMS and seals every value with its own key; omit KeyId or give {DEFAULT_KEY}."
                    )))
                }
                (Some(_), true) => Some(DEFAULT_KEY.to_string()),
                (None, true) => Some(
                    previous
                        .and_then(|p| p.key_id.clone())
                        .unwrap_or_else(|| DEFAULT_KEY.to_string()),
                ),
                (None, false) => None,
            };
            let description = r
                .description
                .clone()
                .or_else(|| previous.and_then(|p| p.description.clone()));
            let allowed_pattern = r
                .allowed_pattern
                .clone()
                .or_else(|| previous.and_then(|p| p.allowed_pattern.clone()));
            if let Some(p) = &allowed_pattern {
                if !compile(p)?.is_match(&r.value) {
                    return Err(err(
                        "ParameterPatternMismatchException",
                        format!("Parameter value, cannot be validated against allowedPattern: {p}"),
                    ));
                }
            }
            let tier = choose_tier(
                r.tier.as_ref(),
                previous.map(|p| p.tier.as_str()),
                r.value.len(),
            )?;
            let data_type = data_type
                .clone()
                .or_else(|| previous.map(|p| p.data_type.clone()))
                .unwrap_or_else(|| "text".to_string());
            let version = match previous {
                None => 1,
                Some(p) => p.version.checked_add(1).ok_or_else(|| {
                    err(
                        "ParameterMaxVersionLimitExceeded",
                        "The parameter has reached its last version number.",
                    )
                })?,
            };
            let mut record = match &existing {
                Some(e) => e.value.clone(),
                None => ParameterRecord {
                    name: name.clone(),
                    versions: Vec::new(),
                    tags: new_tags.clone(),
                },
            };
            if record.versions.len() >= MAX_VERSIONS {
                let oldest = &record.versions[0];
                if !oldest.labels.is_empty() {
                    return Err(err(
                        "ParameterMaxVersionLimitExceeded",
                        format!(
                            "You attempted to create a new version of {name} by calling the PutParameter API with the overwrite flag. Version {}, the oldest version, can't be deleted because it has a label associated with it. Move the label to another version of the parameter, and try again.",
                            oldest.version
                        ),
                    ));
                }
                record.versions.remove(0);
            }
            record.versions.push(VersionRecord {
                version,
                kind: kind.clone(),
                sealed: self.seal(&name, version, &r.value),
                description,
                allowed_pattern,
                key_id,
                tier: tier.to_string(),
                data_type,
                labels: Vec::new(),
                modified: self.now,
                user: self.user(),
            });
            let key = self.key(&name);
            let txn = match &existing {
                Some(e) => Txn::new().when(e.unchanged()),
                None => {
                    let mut txn = Txn::new().when(Compare::NotExists(key.clone()));
                    if let Some(twin) = &twin {
                        txn = txn.when(Compare::NotExists(self.key(twin)));
                    }
                    txn
                }
            };
            if self.commit(txn.then(typed::put(&key, &record))).await? {
                tracing::debug!(parameter = %name, version, "ssm: parameter put");
                return Ok(m::PutParameterResult {
                    version: Some(version),
                    tier: Some(m::ParameterTier::from(tier)),
                });
            }
        }
        Err(contention())
    }

    // ---- reads ----

    async fn get_parameter(
        &self,
        r: m::GetParameterRequest,
    ) -> Result<m::GetParameterResult, AwsError> {
        let reference = names::reference(self.scope, &r.name, true)?;
        let found = self
            .find(&reference)
            .await?
            .ok_or_else(|| not_found(names::trim(&r.name)))?;
        let v = self.select(&found.value, reference.selector.as_ref())?;
        Ok(m::GetParameterResult {
            parameter: Some(self.parameter_out(
                &found.value,
                v,
                r.with_decryption.unwrap_or(false),
                reference.selector.as_ref(),
            )?),
        })
    }

    async fn get_parameters(
        &self,
        r: m::GetParametersRequest,
    ) -> Result<m::GetParametersResult, AwsError> {
        if r.names.is_empty() || r.names.len() > MAX_BATCH {
            return Err(constraint(
                "names",
                "Member must have length less than or equal to 10 and greater than or equal to 1",
            ));
        }
        let decrypt = r.with_decryption.unwrap_or(false);
        let mut parameters = Vec::new();
        let mut invalid = Vec::new();
        let mut seen = Vec::new();
        for raw in &r.names {
            let given = names::trim(raw).to_string();
            if seen.contains(&given) {
                continue;
            }
            seen.push(given.clone());
            let reference = match names::reference(self.scope, raw, true) {
                Ok(r) => r,
                // An ARN of another account or region: not found here.
                Err(e) if e.code == "ParameterNotFound" => {
                    invalid.push(given);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(found) = self.find(&reference).await? else {
                invalid.push(given);
                continue;
            };
            match self.select(&found.value, reference.selector.as_ref()) {
                Ok(v) => parameters.push(self.parameter_out(
                    &found.value,
                    v,
                    decrypt,
                    reference.selector.as_ref(),
                )?),
                Err(_) => invalid.push(given),
            }
        }
        Ok(m::GetParametersResult {
            parameters: Some(parameters),
            invalid_parameters: Some(invalid),
        })
    }

    async fn get_parameters_by_path(
        &self,
        r: m::GetParametersByPathRequest,
    ) -> Result<m::GetParametersByPathResult, AwsError> {
        let path = names::path_prefix(&r.path).map_err(|why| {
            if why.starts_with("A hierarchy") {
                err("HierarchyLevelLimitExceededException", why)
            } else {
                validation(why)
            }
        })?;
        let filters = Filters::parse(r.parameter_filters.as_deref(), Context::ByPath)?;
        let max = max_results(r.max_results, 10, 10)?;
        let recursive = r.recursive.unwrap_or(false);
        let decrypt = r.with_decryption.unwrap_or(false);
        // `/` holds the flat names too: the whole region is scanned.
        let prefix = if path == "/" {
            records::prefix(&self.scope.region)
        } else {
            self.key(&path)
        };
        let (parameters, next_token) = self
            .page(
                &prefix,
                r.next_token.as_deref(),
                max,
                |name| names::under(&path, name, true),
                |record| {
                    if !names::under(&path, &record.name, recursive) {
                        return Ok(None);
                    }
                    match filters.select(record) {
                        Some(v) => self.parameter_out(record, v, decrypt, None).map(Some),
                        None => Ok(None),
                    }
                },
            )
            .await?;
        Ok(m::GetParametersByPathResult {
            parameters: Some(parameters),
            next_token,
        })
    }

    async fn describe_parameters(
        &self,
        r: m::DescribeParametersRequest,
    ) -> Result<m::DescribeParametersResult, AwsError> {
        let filters =
            match (&r.filters, &r.parameter_filters) {
                (Some(f), Some(p)) if !f.is_empty() && !p.is_empty() => return Err(validation(
                    "You can use either Filters or ParameterFilters in a single request, not both.",
                )),
                (Some(f), _) if !f.is_empty() => Filters::parse_legacy(f)?,
                (_, p) => Filters::parse(p.as_deref(), Context::Describe)?,
            };
        let max = max_results(r.max_results, 50, 50)?;
        if r.shared.unwrap_or(false) {
            // Nothing is shared with this account.
            if let Some(t) = &r.next_token {
                untoken(t)?;
            }
            return Ok(m::DescribeParametersResult {
                parameters: Some(Vec::new()),
                next_token: None,
            });
        }
        let (parameters, next_token) = self
            .page(
                &records::prefix(&self.scope.region),
                r.next_token.as_deref(),
                max,
                |_| true,
                |record| Ok(filters.select(record).map(|v| self.metadata_out(record, v))),
            )
            .await?;
        Ok(m::DescribeParametersResult {
            parameters: Some(parameters),
            next_token,
        })
    }

    async fn get_parameter_history(
        &self,
        r: m::GetParameterHistoryRequest,
    ) -> Result<m::GetParameterHistoryResult, AwsError> {
        let max = max_results(r.max_results, 50, 50)?;
        let after = match &r.next_token {
            None => None,
            Some(t) => Some(
                untoken(t)?
                    .parse::<i64>()
                    .map_err(|_| err("InvalidNextToken", "The specified token isn't valid."))?,
            ),
        };
        let found = self.need(&r.name).await?;
        let record = &found.value;
        let decrypt = r.with_decryption.unwrap_or(false);
        let rest: Vec<&VersionRecord> = record
            .versions
            .iter()
            .filter(|v| after.is_none_or(|a| v.version > a))
            .collect();
        let more = rest.len() > max;
        let mut parameters = Vec::new();
        for v in rest.into_iter().take(max) {
            parameters.push(m::ParameterHistory {
                name: Some(record.name.clone()),
                r#type: Some(m::ParameterType::from(v.kind.as_str())),
                key_id: v.key_id.clone(),
                last_modified_date: Some(seconds(v.modified)),
                last_modified_user: Some(v.user.clone()),
                description: v.description.clone(),
                value: Some(self.shown_value(&record.name, v, decrypt)?),
                allowed_pattern: v.allowed_pattern.clone(),
                version: Some(v.version),
                labels: Some(v.labels.clone()),
                tier: Some(m::ParameterTier::from(v.tier.as_str())),
                policies: Some(Vec::new()),
                data_type: Some(v.data_type.clone()),
            });
        }
        let next_token = if more {
            parameters
                .last()
                .and_then(|p| p.version)
                .map(|v| token(&v.to_string()))
        } else {
            None
        };
        Ok(m::GetParameterHistoryResult {
            parameters: Some(parameters),
            next_token,
        })
    }

    // ---- labels ----

    /// Reads the parameter `raw` names, changes it, and writes it back if
    /// nothing changed it meanwhile; retried. `f` returns what to answer
    /// and whether it changed anything.
    async fn modify<T>(
        &self,
        raw: &str,
        mut f: impl FnMut(&mut ParameterRecord) -> Result<(T, bool), AwsError>,
    ) -> Result<T, AwsError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut found = self.need(raw).await?;
            let (answer, changed) = f(&mut found.value)?;
            if !changed {
                return Ok(answer);
            }
            if self
                .commit(Txn::new().when(found.unchanged()).then(found.put()))
                .await?
            {
                return Ok(answer);
            }
        }
        Err(contention())
    }

    async fn label_parameter_version(
        &self,
        r: m::LabelParameterVersionRequest,
    ) -> Result<m::LabelParameterVersionResult, AwsError> {
        check_labels(&r.labels)?;
        let (valid, invalid): (Vec<&String>, Vec<&String>) =
            r.labels.iter().partition(|l| names::label_ok(l));
        self.modify(&r.name, |record| {
            let version = match r.parameter_version {
                Some(n) => n,
                None => record.current().map(|v| v.version).unwrap_or_default(),
            };
            let Some(at) = record.versions.iter().position(|v| v.version == version) else {
                return Err(err(
                    "ParameterVersionNotFound",
                    format!(
                        "Systems Manager could not find version {version} of {}. Verify the version and try again.",
                        record.name
                    ),
                ));
            };
            let mut changed = false;
            for label in &valid {
                for (i, v) in record.versions.iter_mut().enumerate() {
                    let has = v.labels.iter().any(|l| l == *label);
                    if i == at && !has {
                        v.labels.push((*label).clone());
                        changed = true;
                    } else if i != at && has {
                        v.labels.retain(|l| l != *label);
                        changed = true;
                    }
                }
            }
            if record.versions[at].labels.len() > MAX_BATCH {
                return Err(err(
                    "ParameterVersionLabelLimitExceeded",
                    "A parameter version can have maximum 10 labels.Move one or more labels to another version and try again.",
                ));
            }
            Ok((
                m::LabelParameterVersionResult {
                    invalid_labels: Some(invalid.iter().map(|l| (*l).clone()).collect()),
                    parameter_version: Some(version),
                },
                changed,
            ))
        })
        .await
    }

    async fn unlabel_parameter_version(
        &self,
        r: m::UnlabelParameterVersionRequest,
    ) -> Result<m::UnlabelParameterVersionResult, AwsError> {
        check_labels(&r.labels)?;
        self.modify(&r.name, |record| {
            let name = record.name.clone();
            let Some(v) = record
                .versions
                .iter_mut()
                .find(|v| v.version == r.parameter_version)
            else {
                return Err(err(
                    "ParameterVersionNotFound",
                    format!(
                        "Systems Manager could not find version {} of {name}. Verify the version and try again.",
                        r.parameter_version
                    ),
                ));
            };
            let mut removed = Vec::new();
            let mut invalid = Vec::new();
            for label in &r.labels {
                if v.labels.contains(label) {
                    v.labels.retain(|l| l != label);
                    removed.push(label.clone());
                } else if !removed.contains(label) && !invalid.contains(label) {
                    invalid.push(label.clone());
                }
            }
            let changed = !removed.is_empty();
            Ok((
                m::UnlabelParameterVersionResult {
                    removed_labels: Some(removed),
                    invalid_labels: Some(invalid),
                },
                changed,
            ))
        })
        .await
    }

    // ---- deletes ----

    async fn delete_parameter(
        &self,
        r: m::DeleteParameterRequest,
    ) -> Result<m::DeleteParameterResult, AwsError> {
        for _ in 0..MAX_ATTEMPTS {
            let found = self.need(&r.name).await?;
            let txn = Txn::new()
                .when(found.unchanged())
                .then(Op::delete(found.key.clone()));
            if self.commit(txn).await? {
                tracing::debug!(parameter = %found.value.name, "ssm: parameter deleted");
                return Ok(m::DeleteParameterResult {});
            }
        }
        Err(contention())
    }

    async fn delete_parameters(
        &self,
        r: m::DeleteParametersRequest,
    ) -> Result<m::DeleteParametersResult, AwsError> {
        if r.names.is_empty() || r.names.len() > MAX_BATCH {
            return Err(constraint(
                "names",
                "Member must have length less than or equal to 10 and greater than or equal to 1",
            ));
        }
        let mut references = Vec::new();
        for raw in &r.names {
            let given = names::trim(raw).to_string();
            if !references.iter().any(|(g, _)| *g == given) {
                // One that names no parameter here is listed invalid, as
                // GetParameters lists it.
                references.push((given, names::reference(self.scope, raw, false).ok()));
            }
        }
        for _ in 0..MAX_ATTEMPTS {
            let mut txn = Txn::new();
            let mut deleted = Vec::new();
            let mut invalid = Vec::new();
            let mut keys: Vec<String> = Vec::new();
            for (given, reference) in &references {
                let Some(reference) = reference else {
                    invalid.push(given.clone());
                    continue;
                };
                match self.find(reference).await? {
                    Some(found) if !keys.contains(&found.key) => {
                        keys.push(found.key.clone());
                        txn = txn
                            .when(found.unchanged())
                            .then(Op::delete(found.key.clone()));
                        deleted.push(given.clone());
                    }
                    Some(_) => deleted.push(given.clone()),
                    None => invalid.push(given.clone()),
                }
            }
            if deleted.is_empty() || self.commit(txn).await? {
                return Ok(m::DeleteParametersResult {
                    deleted_parameters: Some(deleted),
                    invalid_parameters: Some(invalid),
                });
            }
        }
        Err(contention())
    }

    // ---- tags ----

    /// The parameter a tagging request's `ResourceId` names.
    async fn tagged(
        &self,
        resource_type: &m::ResourceTypeForTagging,
        id: &str,
    ) -> Result<Versioned<ParameterRecord>, AwsError> {
        check_resource_type(resource_type)?;
        let invalid_id = || {
            err(
                "InvalidResourceId",
                format!("The resource ID {id} is not valid. Verify the ID and try again."),
            )
        };
        let r = names::reference(self.scope, id, false).map_err(|_| invalid_id())?;
        self.find(&r).await?.ok_or_else(invalid_id)
    }

    async fn retag(
        &self,
        resource_type: &m::ResourceTypeForTagging,
        id: &str,
        f: impl Fn(&mut Vec<(String, String)>) -> Result<(), AwsError>,
    ) -> Result<(), AwsError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut found = self.tagged(resource_type, id).await?;
            f(&mut found.value.tags)?;
            if self
                .commit(Txn::new().when(found.unchanged()).then(found.put()))
                .await?
            {
                return Ok(());
            }
        }
        Err(contention())
    }

    async fn add_tags_to_resource(
        &self,
        r: m::AddTagsToResourceRequest,
    ) -> Result<m::AddTagsToResourceResult, AwsError> {
        check_resource_type(&r.resource_type)?;
        if r.tags.is_empty() || r.tags.len() > 1000 {
            return Err(constraint(
                "tags",
                "Member must have length less than or equal to 1000 and greater than or equal to 1",
            ));
        }
        check_tags(&r.tags)?;
        self.retag(&r.resource_type, &r.resource_id, |tags| {
            merge_tags(tags, &r.tags)
        })
        .await?;
        Ok(m::AddTagsToResourceResult {})
    }

    async fn remove_tags_from_resource(
        &self,
        r: m::RemoveTagsFromResourceRequest,
    ) -> Result<m::RemoveTagsFromResourceResult, AwsError> {
        check_resource_type(&r.resource_type)?;
        for k in &r.tag_keys {
            if k.is_empty() || k.chars().count() > 128 {
                return Err(constraint(
                    "tagKeys.member",
                    "Member must have length between 1 and 128",
                ));
            }
        }
        self.retag(&r.resource_type, &r.resource_id, |tags| {
            tags.retain(|(k, _)| !r.tag_keys.contains(k));
            Ok(())
        })
        .await?;
        Ok(m::RemoveTagsFromResourceResult {})
    }

    async fn list_tags_for_resource(
        &self,
        r: m::ListTagsForResourceRequest,
    ) -> Result<m::ListTagsForResourceResult, AwsError> {
        let found = self.tagged(&r.resource_type, &r.resource_id).await?;
        Ok(m::ListTagsForResourceResult {
            tag_list: Some(
                found
                    .value
                    .tags
                    .iter()
                    .map(|(key, value)| m::Tag {
                        key: key.clone(),
                        value: value.clone(),
                    })
                    .collect(),
            ),
        })
    }
}
