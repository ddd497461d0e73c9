//! The cluster query language, in the subset ListContainerInstances needs
//! today: clauses `attribute:NAME == V`, `!= V`, `exists`, `in [A, B]`, and
//! `ec2InstanceId == V`, joined by `and`/`&&`. Anything else is refused with
//! a clear error rather than silently matching everything.

use crate::error::{invalid, CoreError};
use crate::records::InstanceRecord;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Subject {
    Attribute(String),
    InstanceId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Test {
    Eq(String),
    Ne(String),
    Exists,
    In(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query(Vec<(Subject, Test)>);

pub fn parse(expr: &str) -> Result<Query, CoreError> {
    let bad = |why: &str| invalid(format!("Invalid filter expression '{expr}': {why}"));
    let normalized = expr.replace("&&", " and ");
    let mut clauses = vec![];
    for clause in normalized.split(" and ").map(str::trim) {
        if clause.is_empty() {
            return Err(bad("empty clause"));
        }
        let (subject, rest) = clause
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad("expected an operator"))?;
        let subject = if let Some(name) = subject.strip_prefix("attribute:") {
            if name.is_empty() {
                return Err(bad("attribute name is empty"));
            }
            Subject::Attribute(name.to_string())
        } else if subject == "ec2InstanceId" {
            Subject::InstanceId
        } else {
            return Err(bad(&format!("unsupported subject '{subject}'")));
        };
        let rest = rest.trim();
        let test = if rest == "exists" {
            Test::Exists
        } else if let Some(v) = rest.strip_prefix("==") {
            Test::Eq(v.trim().to_string())
        } else if let Some(v) = rest.strip_prefix("!=") {
            Test::Ne(v.trim().to_string())
        } else if let Some(list) = rest
            .strip_prefix("in")
            .map(str::trim)
            .and_then(|l| l.strip_prefix('['))
            .and_then(|l| l.strip_suffix(']'))
        {
            Test::In(
                list.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
            )
        } else {
            return Err(bad(&format!("unsupported operator in '{rest}'")));
        };
        if matches!(&test, Test::Eq(v) | Test::Ne(v) if v.is_empty()) {
            return Err(bad("missing value"));
        }
        clauses.push((subject, test));
    }
    Ok(Query(clauses))
}

impl Query {
    pub fn matches(&self, i: &InstanceRecord) -> bool {
        self.0.iter().all(|(subject, test)| {
            let value: Option<Option<&str>> = match subject {
                Subject::Attribute(n) => i.attributes.get(n).map(|v| v.as_deref()),
                Subject::InstanceId => Some(i.hostname.as_deref()),
            };
            match test {
                Test::Exists => value.is_some(),
                Test::Eq(v) => value.flatten() == Some(v.as_str()),
                Test::Ne(v) => value.flatten() != Some(v.as_str()),
                Test::In(vs) => value.flatten().is_some_and(|x| vs.iter().any(|v| v == x)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Resources;

    fn inst() -> InstanceRecord {
        InstanceRecord {
            id: "i".into(),
            arn: "a".into(),
            cluster: "c".into(),
            status: "ACTIVE".into(),
            registered: Resources::default(),
            reserved: Resources::default(),
            allocated: Resources::default(),
            attributes: [
                ("ecs.os-type".to_string(), Some("linux".to_string())),
                ("gpu".to_string(), None),
            ]
            .into(),
            agent_version: None,
            docker_version: None,
            hostname: Some("host-1".into()),
            registered_at: 0,
            tags: Default::default(),
            version: 1,
        }
    }

    #[test]
    fn evaluates_clauses() {
        let i = inst();
        assert!(parse("attribute:ecs.os-type == linux").unwrap().matches(&i));
        assert!(!parse("attribute:ecs.os-type != linux").unwrap().matches(&i));
        assert!(parse("attribute:gpu exists and ec2InstanceId == host-1")
            .unwrap()
            .matches(&i));
        assert!(parse("attribute:ecs.os-type in [windows, linux]")
            .unwrap()
            .matches(&i));
        assert!(!parse("attribute:missing exists && attribute:gpu exists")
            .unwrap()
            .matches(&i));
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        assert!(parse("attribute:x ~ y").is_err());
        assert!(parse("task:group == x").is_err());
        assert!(parse("attribute:x ==").is_err());
        assert!(parse("").is_err());
    }
}
