//! Parameter names, paths, references (name or ARN, with a selector) and
//! labels, checked as SSM checks them.

use crate::{err, validation, Scope};
use wharf_protocol::AwsError;

pub const MAX_NAME: usize = 2048;
/// SSM: the ARN up to and including `parameter/`, plus the name, at most
/// 1011 characters.
pub const MAX_ARN: usize = 1011;
pub const MAX_LEVELS: usize = 15;
pub const MAX_LABEL: usize = 100;

const BAD_NAME: &str = "Parameter name: can't be prefixed with \"aws\" or \"ssm\" (case-insensitive). If formed as a path, it can consist of sub-paths divided by slash symbol; each sub-path can be formed as a mix of letters, numbers and the following 3 symbols .-_";

/// `arn:aws:ssm:{region}:{account}:parameter/{name without its leading slash}`.
pub fn arn(scope: &Scope, name: &str) -> String {
    format!(
        "arn:aws:ssm:{}:{}:parameter/{}",
        scope.region,
        scope.account,
        name.strip_prefix('/').unwrap_or(name)
    )
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/')
}

/// SSM trims spaces at either end of a name.
pub fn trim(name: &str) -> &str {
    name.trim_matches(' ')
}

/// The lexical checks every name passes (also when only looked up).
fn check_lexical(name: &str) -> Result<(), AwsError> {
    if name.is_empty() {
        return Err(validation(
            "1 validation error detected: Value '' at 'name' failed to satisfy constraint: Member must have length greater than or equal to 1",
        ));
    }
    if name.chars().count() > MAX_NAME {
        return Err(validation(format!(
            "1 validation error detected: Value at 'name' failed to satisfy constraint: Member must have length less than or equal to {MAX_NAME}"
        )));
    }
    if !name.chars().all(name_char) {
        return Err(validation(BAD_NAME));
    }
    Ok(())
}

/// A name for a new parameter (or a new version): trimmed and checked.
pub fn check_new(scope: &Scope, raw: &str) -> Result<String, AwsError> {
    let name = trim(raw);
    check_lexical(name)?;
    if arn(scope, name).chars().count() > MAX_ARN {
        return Err(validation(format!(
            "Parameter name is too long: with its ARN prefix it must be at most {MAX_ARN} characters."
        )));
    }
    let segments: Vec<&str> = match name.strip_prefix('/') {
        Some(rest) => rest.split('/').collect(),
        None if name.contains('/') => return Err(validation(BAD_NAME)),
        None => vec![name],
    };
    if segments.iter().any(|s| s.is_empty()) {
        return Err(validation(BAD_NAME));
    }
    let first = segments[0].to_ascii_lowercase();
    if first.starts_with("aws") || first.starts_with("ssm") {
        return Err(validation(BAD_NAME));
    }
    if name.matches('/').count() > MAX_LEVELS {
        return Err(err(
            "HierarchyLevelLimitExceededException",
            format!("A hierarchy can have a maximum of {MAX_LEVELS} levels."),
        ));
    }
    Ok(name.to_string())
}

/// A path of GetParametersByPath or a `Path` filter, as the prefix its
/// parameters' names have: `/a/b` and `/a/b/` give `/a/b/`, `/` gives `/`.
pub fn path_prefix(raw: &str) -> Result<String, String> {
    let path = trim(raw);
    if !path.starts_with('/') {
        return Err(
            "The parameter doesn't meet the parameter name requirements. The parameter name must begin with a forward slash \"/\"."
                .into(),
        );
    }
    if path.chars().count() > MAX_NAME || !path.chars().all(name_char) {
        return Err(BAD_NAME.into());
    }
    let inner = path.trim_end_matches('/');
    if inner.is_empty() {
        return Ok("/".into());
    }
    if inner[1..].split('/').any(|s| s.is_empty()) {
        return Err(BAD_NAME.into());
    }
    if inner.matches('/').count() > MAX_LEVELS {
        return Err(format!(
            "A hierarchy can have a maximum of {MAX_LEVELS} levels."
        ));
    }
    Ok(format!("{inner}/"))
}

/// Whether `name` is under the path `prefix` (from [`path_prefix`]):
/// anywhere below it (`recursive`) or directly in it. Flat names (no `/`)
/// are at the top level, in `/`.
pub fn under(prefix: &str, name: &str, recursive: bool) -> bool {
    let rest = if prefix == "/" && !name.starts_with('/') {
        name
    } else {
        match name.strip_prefix(prefix) {
            Some(rest) => rest,
            None => return false,
        }
    };
    recursive || !rest.contains('/')
}

/// A version or label after a name: `name:3`, `name:prod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Version(i64),
    Label(String),
}

impl Selector {
    /// As SSM returns it in `Parameter.Selector`: with its colon.
    pub fn wire(&self) -> String {
        match self {
            Selector::Version(v) => format!(":{v}"),
            Selector::Label(l) => format!(":{l}"),
        }
    }
}

/// A parameter as a request names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The names it may be: one, or for an ARN `…:parameter/a` both `a`
    /// and `/a` (only one of which can exist).
    pub candidates: Vec<String>,
    pub selector: Option<Selector>,
}

impl Reference {
    /// The name to show in messages.
    pub fn shown(&self) -> &str {
        self.candidates
            .first()
            .map(String::as_str)
            .unwrap_or_default()
    }
}

fn bad_selector() -> AwsError {
    validation(
        "Invalid parameter name. Please use correct syntax for referencing a version/label  <name>:<version/label>",
    )
}

/// A name or ARN, with a selector if `selectors` allows one.
pub fn reference(scope: &Scope, raw: &str, selectors: bool) -> Result<Reference, AwsError> {
    let raw = trim(raw);
    let (candidates, selector) = if let Some(arn_rest) = raw.strip_prefix("arn:") {
        let parts: Vec<&str> = arn_rest.splitn(6, ':').collect();
        let [partition, service, region, account, resource, selector @ ..] = parts.as_slice()
        else {
            return Err(validation(format!("{raw} is not a valid parameter ARN.")));
        };
        let Some(rest) = resource.strip_prefix("parameter/") else {
            return Err(validation(format!("{raw} is not a valid parameter ARN.")));
        };
        if *partition != "aws" || *service != "ssm" {
            return Err(validation(format!("{raw} is not a valid parameter ARN.")));
        }
        if *region != scope.region || *account != scope.account {
            return Err(err(
                "ParameterNotFound",
                format!(
                    "Parameter {raw} is not a parameter of this account ({}) and region ({}).",
                    scope.account, scope.region
                ),
            ));
        }
        if rest.is_empty() || rest.starts_with('/') {
            return Err(validation(format!("{raw} is not a valid parameter ARN.")));
        }
        let candidates = if rest.contains('/') {
            vec![format!("/{rest}")]
        } else {
            vec![rest.to_string(), format!("/{rest}")]
        };
        (candidates, selector.first().copied())
    } else {
        match raw.split_once(':') {
            Some((name, selector)) => (vec![name.to_string()], Some(selector)),
            None => (vec![raw.to_string()], None),
        }
    };
    for name in &candidates {
        check_lexical(name)?;
    }
    let selector = match selector {
        None => None,
        Some(_) if !selectors => return Err(validation(BAD_NAME)),
        Some(s) if s.is_empty() || s.contains(':') || s.chars().count() > MAX_LABEL => {
            return Err(bad_selector())
        }
        Some(s) if s.bytes().all(|b| b.is_ascii_digit()) => {
            Some(Selector::Version(s.parse().map_err(|_| bad_selector())?))
        }
        Some(s) => Some(Selector::Label(s.to_string())),
    };
    Ok(Reference {
        candidates,
        selector,
    })
}

/// Whether SSM accepts `label` on a version: letters, digits, `.-_`, not
/// beginning with a digit, `aws` or `ssm` (without regard to case).
pub fn label_ok(label: &str) -> bool {
    let lower = label.to_ascii_lowercase();
    !label.is_empty()
        && label.chars().count() <= MAX_LABEL
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && !label.starts_with(|c: char| c.is_ascii_digit())
        && !lower.starts_with("aws")
        && !lower.starts_with("ssm")
}
