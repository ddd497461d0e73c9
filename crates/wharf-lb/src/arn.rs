//! ELBv2 ARNs: what they look like and the names they carry.
//!
//! `arn:aws:elasticloadbalancing:REGION:ACCOUNT:` followed by
//! `loadbalancer/app/NAME/ID`, `targetgroup/NAME/ID`,
//! `listener/app/LB/LBID/ID` or `listener-rule/app/LB/LBID/LISTENER/ID`
//! (`net` instead of `app` for network load balancers).

/// The prefix every ELBv2 ARN of an account and region shares.
pub fn prefix(region: &str, account: &str) -> String {
    format!("arn:aws:elasticloadbalancing:{region}:{account}:")
}

/// `app` or `net`, as ARNs spell a load balancer type.
pub fn type_segment(kind: &str) -> &'static str {
    if kind == "network" {
        "net"
    } else {
        "app"
    }
}

/// The resource part of an ELBv2 ARN split at `/`, if `arn` is one.
fn resource(arn: &str) -> Option<Vec<&str>> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_), Some("elasticloadbalancing"), Some(_), Some(_), Some(rest)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let segs: Vec<&str> = rest.split('/').collect();
    segs.iter().all(|s| !s.is_empty()).then_some(segs)
}

/// The load balancer name in a load balancer ARN.
pub fn load_balancer_name(arn: &str) -> Option<&str> {
    match resource(arn)?.as_slice() {
        ["loadbalancer", "app" | "net", name, _id] => Some(name),
        _ => None,
    }
}

pub fn target_group_name(arn: &str) -> Option<&str> {
    match resource(arn)?.as_slice() {
        ["targetgroup", name, _id] => Some(name),
        _ => None,
    }
}

/// (load balancer name, listener id) of a listener ARN.
pub fn listener_parts(arn: &str) -> Option<(&str, &str)> {
    match resource(arn)?.as_slice() {
        ["listener", "app" | "net", lb, _lbid, id] => Some((lb, id)),
        _ => None,
    }
}

/// (load balancer name, listener id, rule id) of a rule ARN.
pub fn rule_parts(arn: &str) -> Option<(&str, &str, &str)> {
    match resource(arn)?.as_slice() {
        ["listener-rule", "app" | "net", lb, _lbid, listener, id] => Some((lb, listener, id)),
        _ => None,
    }
}

/// 16 random hex digits, as the IDs that end ELBv2 ARNs.
pub fn new_id() -> String {
    let bytes: [u8; 8] = rand::random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind() {
        let p = "arn:aws:elasticloadbalancing:us-east-1:000000000000:";
        assert_eq!(
            load_balancer_name(&format!("{p}loadbalancer/app/web/0123456789abcdef")),
            Some("web")
        );
        assert_eq!(
            target_group_name(&format!("{p}targetgroup/tg/0123456789abcdef")),
            Some("tg")
        );
        assert_eq!(
            listener_parts(&format!("{p}listener/net/web/0123/4567")),
            Some(("web", "4567"))
        );
        assert_eq!(
            rule_parts(&format!("{p}listener-rule/app/web/0123/4567/89ab")),
            Some(("web", "4567", "89ab"))
        );
        assert_eq!(load_balancer_name(&format!("{p}targetgroup/tg/01")), None);
        assert_eq!(
            load_balancer_name("arn:aws:ecs:r:a:loadbalancer/app/x/1"),
            None
        );
        assert_eq!(target_group_name(&format!("{p}targetgroup//01")), None);
    }
}
