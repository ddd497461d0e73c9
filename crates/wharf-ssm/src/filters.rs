//! `ParameterFilters` of DescribeParameters and GetParametersByPath, and
//! the deprecated `Filters` of DescribeParameters.

use crate::names;
use crate::records::{ParameterRecord, VersionRecord};
use crate::{err, validation};
use wharf_model::ssm as m;
use wharf_protocol::AwsError;

const MAX_KEY: usize = 132;
const MAX_VALUE: usize = 1024;
const MAX_VALUES: usize = 50;

/// Which operation the filters are of: each allows different keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Describe,
    ByPath,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum FilterKey {
    Name,
    Type,
    KeyId,
    Path,
    Tier,
    DataType,
    Label,
    Tag(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Equals,
    BeginsWith,
    Contains,
    Recursive,
    OneLevel,
}

#[derive(Debug, Clone)]
struct Filter {
    key: FilterKey,
    option: Opt,
    /// For `Path`: the paths as name prefixes (see [`names::path_prefix`]).
    values: Vec<String>,
}

/// Parsed filters; all must hold (AND), any value of one may (OR).
#[derive(Debug, Clone, Default)]
pub struct Filters {
    filters: Vec<Filter>,
}

fn options_text(options: &[&str]) -> String {
    format!("[{}]", options.join(", "))
}

impl Filters {
    pub fn parse(
        given: Option<&[m::ParameterStringFilter]>,
        context: Context,
    ) -> Result<Filters, AwsError> {
        let mut filters = Vec::new();
        for (i, f) in given.unwrap_or_default().iter().enumerate() {
            let at = format!("parameterFilters.{}.member", i + 1);
            let key = match f.key.as_str() {
                "Name" => FilterKey::Name,
                "Type" => FilterKey::Type,
                "KeyId" => FilterKey::KeyId,
                "Path" => FilterKey::Path,
                "Tier" => FilterKey::Tier,
                "DataType" => FilterKey::DataType,
                "Label" => FilterKey::Label,
                k if k.len() > 4 && k.starts_with("tag:") && k.chars().count() <= MAX_KEY => {
                    FilterKey::Tag(k[4..].to_string())
                }
                k => {
                    return Err(validation(format!(
                        "1 validation error detected: Value '{k}' at '{at}.key' failed to satisfy constraint: Member must satisfy regular expression pattern: ^(tag:.+|Name|Type|KeyId|Path|Label|Tier|DataType)$"
                    )))
                }
            };
            let allowed = match context {
                Context::ByPath => {
                    matches!(key, FilterKey::Type | FilterKey::KeyId | FilterKey::Label)
                }
                Context::Describe => !matches!(key, FilterKey::Label),
            };
            if !allowed {
                let valid = match context {
                    Context::ByPath => "[Type, KeyId, Label]",
                    Context::Describe => "[Name, Type, KeyId, Path, Tier, DataType, tag:<key>]",
                };
                return Err(err(
                    "InvalidFilterKey",
                    format!(
                        "The following filter key is not valid: {}. Valid filter keys include: {valid}.",
                        f.key
                    ),
                ));
            }
            let options: &[&str] = match (&key, context) {
                (FilterKey::Path, _) => &["Recursive", "OneLevel"],
                (FilterKey::Label, _) => &["Equals"],
                (FilterKey::Name, Context::Describe) => &["Equals", "BeginsWith", "Contains"],
                _ => &["Equals", "BeginsWith"],
            };
            let option_name = f.option.as_deref().unwrap_or(match key {
                FilterKey::Path => "OneLevel",
                _ => "Equals",
            });
            if !options.contains(&option_name) {
                return Err(err(
                    "InvalidFilterOption",
                    format!(
                        "The following filter option is not valid: {option_name}. Valid options include: {}.",
                        options_text(options)
                    ),
                ));
            }
            let option = match option_name {
                "BeginsWith" => Opt::BeginsWith,
                "Contains" => Opt::Contains,
                "Recursive" => Opt::Recursive,
                "OneLevel" => Opt::OneLevel,
                _ => Opt::Equals,
            };
            let values = f.values.clone().unwrap_or_default();
            if values.is_empty() && !matches!(key, FilterKey::Tag(_)) {
                return Err(err(
                    "InvalidFilterValue",
                    format!(
                        "The following filter values are missing : null for filter key {}.",
                        f.key
                    ),
                ));
            }
            if values.len() > MAX_VALUES {
                return Err(validation(format!(
                    "1 validation error detected: Value at '{at}.values' failed to satisfy constraint: Member must have length less than or equal to {MAX_VALUES}"
                )));
            }
            for v in &values {
                if v.is_empty() || v.chars().count() > MAX_VALUE {
                    return Err(validation(format!(
                        "1 validation error detected: Value at '{at}.values' failed to satisfy constraint: Member must have length between 1 and {MAX_VALUE}"
                    )));
                }
            }
            let known: Option<&[&str]> = match key {
                FilterKey::Type => Some(m::ParameterType::VALUES),
                FilterKey::Tier => Some(&["Standard", "Advanced", "Intelligent-Tiering"]),
                _ => None,
            };
            if let (Some(known), Opt::Equals) = (known, option) {
                if let Some(bad) = values.iter().find(|v| !known.contains(&v.as_str())) {
                    return Err(err(
                        "InvalidFilterValue",
                        format!(
                            "The following filter value is not valid: {bad}. Valid values include: {}.",
                            options_text(known)
                        ),
                    ));
                }
            }
            let values = if key == FilterKey::Path {
                values
                    .iter()
                    .map(|v| {
                        names::path_prefix(v).map_err(|why| {
                            err(
                                "InvalidFilterValue",
                                format!("The following path is not valid: {v}. {why}"),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            } else {
                values
            };
            filters.push(Filter {
                key,
                option,
                values,
            });
        }
        Ok(Filters { filters })
    }

    /// The deprecated `Filters` of DescribeParameters: `Name` (names that
    /// begin with a value), `Type` and `KeyId` (equal to a value).
    pub fn parse_legacy(given: &[m::ParametersFilter]) -> Result<Filters, AwsError> {
        let mut filters = Vec::new();
        for (i, f) in given.iter().enumerate() {
            let (key, option) = match &f.key {
                m::ParametersFilterKey::Name => (FilterKey::Name, Opt::BeginsWith),
                m::ParametersFilterKey::Type => (FilterKey::Type, Opt::Equals),
                m::ParametersFilterKey::KeyId => (FilterKey::KeyId, Opt::Equals),
                m::ParametersFilterKey::Unknown(k) => {
                    return Err(validation(format!(
                        "1 validation error detected: Value '{k}' at 'filters.{}.member.key' failed to satisfy constraint: Member must satisfy enum value set: [Name, Type, KeyId]",
                        i + 1
                    )))
                }
            };
            if f.values.is_empty() || f.values.len() > MAX_VALUES {
                return Err(validation(format!(
                    "1 validation error detected: Value at 'filters.{}.member.values' failed to satisfy constraint: Member must have length between 1 and {MAX_VALUES}",
                    i + 1
                )));
            }
            if f.values
                .iter()
                .any(|v| v.is_empty() || v.chars().count() > MAX_VALUE)
            {
                return Err(validation(format!(
                    "1 validation error detected: Value at 'filters.{}.member.values' failed to satisfy constraint: Member must have length between 1 and {MAX_VALUE}",
                    i + 1
                )));
            }
            filters.push(Filter {
                key,
                option,
                values: f.values.clone(),
            });
        }
        Ok(Filters { filters })
    }

    /// The version of `record` the filters select, if they hold: the
    /// newest version with the labels asked for (with a `Label` filter),
    /// else the current one.
    pub fn select<'r>(&self, record: &'r ParameterRecord) -> Option<&'r VersionRecord> {
        let labels: Vec<&Filter> = self
            .filters
            .iter()
            .filter(|f| f.key == FilterKey::Label)
            .collect();
        let version = if labels.is_empty() {
            record.current()?
        } else {
            record.versions.iter().rev().find(|v| {
                labels
                    .iter()
                    .all(|f| v.labels.iter().any(|l| f.values.contains(l)))
            })?
        };
        self.filters
            .iter()
            .all(|f| holds(f, record, version))
            .then_some(version)
    }
}

fn matches(option: Opt, values: &[String], field: &str) -> bool {
    values.iter().any(|v| match option {
        Opt::BeginsWith => field.starts_with(v.as_str()),
        Opt::Contains => field.contains(v.as_str()),
        _ => field == v,
    })
}

fn holds(f: &Filter, record: &ParameterRecord, version: &VersionRecord) -> bool {
    match &f.key {
        FilterKey::Name => matches(f.option, &f.values, &record.name),
        FilterKey::Type => matches(f.option, &f.values, &version.kind),
        FilterKey::KeyId => version
            .key_id
            .as_deref()
            .is_some_and(|k| matches(f.option, &f.values, k)),
        FilterKey::Tier => matches(f.option, &f.values, &version.tier),
        FilterKey::DataType => matches(f.option, &f.values, &version.data_type),
        FilterKey::Label => true, // chosen in `select`
        FilterKey::Path => f
            .values
            .iter()
            .any(|p| names::under(p, &record.name, f.option == Opt::Recursive)),
        FilterKey::Tag(key) => record
            .tags
            .iter()
            .any(|(k, v)| k == key && (f.values.is_empty() || matches(f.option, &f.values, v))),
    }
}
