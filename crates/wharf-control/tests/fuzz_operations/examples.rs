//! Valid requests of the operations the server implements, against the
//! seeded state: the bodies [`crate::bodies::Gen::mutated`] starts from. An
//! operation without one here is fuzzed from its schema alone.

use crate::{Names, Service, NOW};
use serde_json::{json, Value};

pub fn of(service: Service, op: &str, n: &Names) -> Vec<Value> {
    let (task, instance, deployment) = (&n.task, &n.instance, &n.deployment);
    let (lb, tg, listener, rule) = (&n.load_balancer, &n.target_group, &n.listener, &n.rule);
    let forward = json!([{"Type": "forward", "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": tg, "Weight": 3}],
        "TargetGroupStickinessConfig": {"Enabled": true, "DurationSeconds": 60}}}]);
    let container = json!({
        "name": "app", "image": "busybox", "cpu": 128, "memory": 256, "memoryReservation": 128,
        "essential": true,
        "portMappings": [{"containerPort": 80, "hostPort": 8080, "protocol": "tcp"}],
        "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 30, "timeout": 5,
                        "retries": 3, "startPeriod": 0},
        "mountPoints": [{"sourceVolume": "data", "containerPath": "/data"}],
        "environment": [{"name": "A", "value": "1"}],
    });
    let sidecar = json!({"name": "side", "image": "busybox", "memory": 64, "essential": false,
                         "dependsOn": [{"containerName": "app", "condition": "HEALTHY"}]});
    let placement = json!({
        "placementConstraints": [{"type": "memberOf",
            "expression": "attribute:ecs.availability-zone in [us-east-1a, us-east-1b]"},
            {"type": "distinctInstance"}],
        "placementStrategy": [{"type": "spread", "field": "attribute:ecs.availability-zone"},
                              {"type": "binpack", "field": "memory"}],
    });
    let overrides = json!({"cpu": "256", "memory": "512",
        "containerOverrides": [{"name": "app", "cpu": 64, "memory": 128, "command": ["sh"],
                                "environment": [{"name": "B", "value": "2"}]}]});
    let resources = json!([
        {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096},
        {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22", "2375"]},
        {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []}]);
    let report = json!({"cluster": "fuzz", "taskArn": task, "status": "RUNNING",
        "reason": null, "pullStartedAt": NOW - 10, "pullStoppedAt": NOW - 5, "startedAt": NOW,
        "executionStoppedAt": null, "privateIpv4": "10.0.0.2",
        "containers": [{"name": "app", "runtimeId": "abc", "imageDigest": "sha256:00",
            "status": "RUNNING", "exitCode": 0, "reason": null, "healthStatus": "HEALTHY",
            "networkBindings": [{"bindIP": "0.0.0.0", "containerPort": 80, "hostPort": 8080}]}]});
    let events = json!([{"timestamp": NOW - 1000, "message": "{\"a\": 2}"},
                        {"timestamp": NOW, "message": "b ERROR"}]);
    let group = json!("/fuzz/group");
    let allow = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecs:*","Resource":"*"}]}"#;
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":["sts:AssumeRole","sts:TagSession"]}]}"#;
    let policy = "arn:aws:iam::000000000000:policy/fuzz-policy";
    match (service, op) {
        (Service::Elbv2, "CreateLoadBalancer") => {
            vec![json!({"Name": "lb2", "Subnets": ["s-1", "s-2"],
            "SecurityGroups": ["sg-1"], "Scheme": "internal", "Type": "application",
            "Tags": [{"Key": "k", "Value": "v"}]})]
        }
        (Service::Elbv2, "CreateTargetGroup") => {
            vec![json!({"Name": "tg2", "Protocol": "HTTP", "Port": 8080,
            "VpcId": "vpc-1", "TargetType": "instance", "HealthCheckPath": "/health",
            "HealthCheckIntervalSeconds": 10, "HealthCheckTimeoutSeconds": 5, "HealthyThresholdCount": 3,
            "UnhealthyThresholdCount": 2, "Matcher": {"HttpCode": "200-299"}})]
        }
        (Service::Elbv2, "ModifyTargetGroup") => vec![json!({"TargetGroupArn": tg,
            "HealthCheckPath": "/h", "HealthCheckIntervalSeconds": 30, "Matcher": {"HttpCode": "200,202"}})],
        (Service::Elbv2, "ModifyTargetGroupAttributes") => {
            vec![json!({"TargetGroupArn": tg, "Attributes": [
            {"Key": "deregistration_delay.timeout_seconds", "Value": "10"},
            {"Key": "stickiness.enabled", "Value": "true"},
            {"Key": "slow_start.duration_seconds", "Value": "30"},
            {"Key": "load_balancing.algorithm.type", "Value": "least_outstanding_requests"}]})]
        }
        (Service::Elbv2, "ModifyLoadBalancerAttributes") => {
            vec![json!({"LoadBalancerArn": lb, "Attributes": [
            {"Key": "idle_timeout.timeout_seconds", "Value": "30"},
            {"Key": "deletion_protection.enabled", "Value": "true"}]})]
        }
        (Service::Elbv2, "RegisterTargets" | "DeregisterTargets" | "DescribeTargetHealth") => {
            vec![
                json!({"TargetGroupArn": tg, "Targets": [{"Id": "10.0.0.1", "Port": 80}, {"Id": "10.0.0.2"}]}),
            ]
        }
        (Service::Elbv2, "CreateListener") => {
            vec![json!({"LoadBalancerArn": lb, "Protocol": "HTTP",
            "Port": 18081, "DefaultActions": forward})]
        }
        (Service::Elbv2, "ModifyListener") => vec![json!({"ListenerArn": listener, "Port": 18082,
            "DefaultActions": [{"Type": "fixed-response",
                "FixedResponseConfig": {"StatusCode": "404", "ContentType": "text/plain", "MessageBody": "no"}}]})],
        (Service::Elbv2, "CreateRule") => vec![
            json!({"ListenerArn": listener, "Priority": 20, "Conditions": [
            {"Field": "host-header", "HostHeaderConfig": {"Values": ["*.example.com"]}},
            {"Field": "query-string", "QueryStringConfig": {"Values": [{"Key": "a", "Value": "b"}]}},
            {"Field": "source-ip", "SourceIpConfig": {"Values": ["10.0.0.0/8"]}}],
            "Actions": [{"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443",
                "Path": "/#{path}", "StatusCode": "HTTP_301"}}]}),
        ],
        (Service::Elbv2, "ModifyRule") => vec![json!({"RuleArn": rule, "Conditions": [
            {"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "X-A", "Values": ["b*"]}}],
            "Actions": forward})],
        (Service::Elbv2, "SetRulePriorities") => {
            vec![json!({"RulePriorities": [{"RuleArn": rule, "Priority": 5}]})]
        }
        (Service::Elbv2, "AddTags") => vec![json!({"ResourceArns": [lb, tg, listener, rule],
            "Tags": [{"Key": "k", "Value": "v"}]})],
        (Service::Elbv2, "DescribeRules") => vec![json!({"ListenerArn": listener, "PageSize": 1})],
        (Service::Elbv2, "DeleteLoadBalancer") => vec![json!({"LoadBalancerArn": lb})],
        (Service::Elbv2, "DeleteTargetGroup") => vec![json!({"TargetGroupArn": tg})],
        (Service::Ecs, "CreateCluster") => vec![json!({"clusterName": "c2",
            "tags": [{"key": "k", "value": "v"}],
            "settings": [{"name": "containerInsights", "value": "enabled"}]})],
        (Service::Ecs, "DescribeClusters") => {
            vec![json!({"clusters": ["fuzz", "default"], "include": ["TAGS", "SETTINGS"]})]
        }
        (Service::Ecs, "ListClusters") => vec![json!({"maxResults": 1, "nextToken": "ZnV6eg"})],
        (Service::Ecs, "UpdateCluster") => vec![json!({"cluster": "fuzz",
            "settings": [{"name": "containerInsights", "value": "disabled"}]})],
        (Service::Ecs, "DeleteCluster") => vec![json!({"cluster": "fuzz"})],
        (Service::Ecs, "RegisterTaskDefinition") => vec![
            json!({"family": "web", "containerDefinitions": [container, sidecar],
                   "volumes": [{"name": "data", "host": {"sourcePath": "/tmp"}}],
                   "cpu": "0.5 vcpu", "memory": "1 GB", "networkMode": "bridge",
                   "placementConstraints": [{"type": "memberOf", "expression": "attribute:x exists"}],
                   "tags": [{"key": "k", "value": "v"}]}),
            json!({"family": "net", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
                   "cpu": "256", "memory": "512",
                   "containerDefinitions": [{"name": "a", "image": "x",
                       "portMappings": [{"containerPort": 443}]}]}),
        ],
        (Service::Ecs, "DescribeTaskDefinition") => {
            vec![json!({"taskDefinition": "web:2", "include": ["TAGS"]})]
        }
        (Service::Ecs, "ListTaskDefinitions") => vec![json!({"familyPrefix": "web",
            "status": "ACTIVE", "sort": "DESC", "maxResults": 1})],
        (Service::Ecs, "ListTaskDefinitionFamilies") => {
            vec![json!({"familyPrefix": "w", "status": "ALL", "maxResults": 5})]
        }
        (Service::Ecs, "DeregisterTaskDefinition") => vec![json!({"taskDefinition": "web:2"})],
        (Service::Ecs, "DeleteTaskDefinitions") => {
            vec![json!({"taskDefinitions": ["web:1", "web:2"]})]
        }
        (Service::Ecs, "RunTask") => {
            let mut r = json!({"cluster": "fuzz", "taskDefinition": "web", "count": 3,
                "startedBy": "me", "group": "g", "launchType": "EC2", "overrides": overrides,
                "tags": [{"key": "k", "value": "v"}], "enableExecuteCommand": false});
            r.as_object_mut()
                .unwrap()
                .extend(placement.as_object().unwrap().clone());
            vec![r]
        }
        (Service::Ecs, "StartTask") => vec![json!({"cluster": "fuzz", "taskDefinition": "web:2",
            "containerInstances": [instance], "overrides": overrides, "startedBy": "me"})],
        (Service::Ecs, "StopTask") => {
            vec![json!({"cluster": "fuzz", "task": task, "reason": "because"})]
        }
        (Service::Ecs, "DescribeTasks") => {
            vec![json!({"cluster": "fuzz", "tasks": [task, "nope"], "include": ["TAGS"]})]
        }
        (Service::Ecs, "ListTasks") => {
            vec![json!({"cluster": "fuzz", "containerInstance": instance,
            "family": "web", "desiredStatus": "RUNNING", "launchType": "EC2", "maxResults": 1,
            "startedBy": "me", "serviceName": "svc"})]
        }
        (
            Service::Ecs | Service::Agent,
            "RegisterContainerInstance" | "RegisterManagedCapacity",
        ) => {
            vec![
                json!({"cluster": "fuzz", "totalResources": resources,
                       "versionInfo": {"agentVersion": "1.2.3", "dockerVersion": "27"},
                       "attributes": [{"name": "ecs.availability-zone", "value": "us-east-1b"}],
                       "instanceIdentityDocument": "{\"instanceId\": \"i-1\"}",
                       "tags": [{"key": "k", "value": "v"}]}),
                json!({"cluster": "fuzz", "containerInstanceArn": instance,
                       "totalResources": resources}),
            ]
        }
        (Service::Ecs, "DeregisterContainerInstance") => {
            vec![json!({"cluster": "fuzz", "containerInstance": instance, "force": true})]
        }
        (Service::Ecs, "DescribeContainerInstances") => vec![json!({"cluster": "fuzz",
            "containerInstances": [instance], "include": ["TAGS"]})],
        (Service::Ecs, "ListContainerInstances") => vec![json!({"cluster": "fuzz",
            "filter": "attribute:ecs.availability-zone == us-east-1a and runningTasksCount > 0",
            "status": "ACTIVE", "maxResults": 10})],
        (Service::Ecs, "UpdateContainerInstancesState") => vec![json!({"cluster": "fuzz",
            "containerInstances": [instance, instance], "status": "DRAINING"})],
        (Service::Ecs, "CreateService") => {
            let mut r = json!({"cluster": "fuzz", "serviceName": "svc2", "taskDefinition": "web",
                "desiredCount": 2, "launchType": "EC2", "schedulingStrategy": "REPLICA",
                "healthCheckGracePeriodSeconds": 60, "propagateTags": "SERVICE",
                "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 50,
                    "deploymentCircuitBreaker": {"enable": true, "rollback": true}},
                "tags": [{"key": "k", "value": "v"}]});
            r.as_object_mut()
                .unwrap()
                .extend(placement.as_object().unwrap().clone());
            vec![r]
        }
        (Service::Ecs, "UpdateService") => vec![
            json!({"cluster": "fuzz", "service": "svc",
            "desiredCount": 3, "taskDefinition": "web:2", "forceNewDeployment": true,
            "healthCheckGracePeriodSeconds": 10,
            "deploymentConfiguration": {"maximumPercent": 150, "minimumHealthyPercent": 100},
            "placementStrategy": [{"type": "random"}]}),
            json!({"cluster": "fuzz", "service": "svc", "taskDefinition": "web:2",
            "deploymentConfiguration": {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 1,
                "lifecycleHooks": [{"targetType": "PAUSE", "lifecycleStages": ["POST_SCALE_UP"],
                    "timeoutConfiguration": {"timeoutInMinutes": 5, "action": "CONTINUE"}}]}}),
        ],
        (Service::Ecs, "DeleteService") => {
            vec![json!({"cluster": "fuzz", "service": "svc", "force": true})]
        }
        (Service::Ecs, "DescribeServices") => {
            vec![json!({"cluster": "fuzz", "services": ["svc"], "include": ["TAGS"]})]
        }
        (Service::Ecs, "ListServices") => vec![json!({"cluster": "fuzz", "launchType": "EC2",
            "schedulingStrategy": "REPLICA", "maxResults": 1})],
        (Service::Ecs, "ListServiceDeployments") => vec![json!({"cluster": "fuzz",
            "service": "svc", "status": ["PENDING", "IN_PROGRESS"], "maxResults": 5,
            "createdAt": {"after": 0.5, "before": 1.7e9}})],
        (Service::Ecs, "DescribeServiceDeployments") => {
            vec![json!({"serviceDeploymentArns": [deployment]})]
        }
        (Service::Ecs, "DescribeServiceRevisions") => vec![json!({"serviceRevisionArns":
            [deployment.replace("service-deployment", "service-revision")]})],
        (Service::Ecs, "StopServiceDeployment") => {
            vec![json!({"serviceDeploymentArn": deployment, "stopType": "ROLLBACK"})]
        }
        (Service::Ecs, "ContinueServiceDeployment") => vec![
            json!({"serviceDeploymentArn": deployment, "hookId": "ecs-pause-x", "action": "CONTINUE"}),
            json!({"serviceDeploymentArn": deployment, "hookId": "ecs-pause-x", "action": "ROLLBACK"}),
        ],
        (Service::Ecs, "TagResource") => {
            vec![json!({"resourceArn": task, "tags": [{"key": "a", "value": "b"}]})]
        }
        (Service::Ecs, "UntagResource") => vec![json!({"resourceArn": task, "tagKeys": ["a"]})],
        (Service::Ecs, "ListTagsForResource") => vec![json!({"resourceArn": instance})],
        (Service::Ecs, "PutAttributes" | "DeleteAttributes") => vec![json!({"cluster": "fuzz",
            "attributes": [{"name": "color", "value": "blue", "targetType": "container-instance",
                            "targetId": instance},
                           {"name": "size", "targetId": instance.rsplit('/').next()}]})],
        (Service::Ecs, "CreateCapacityProvider") => vec![json!({"name": "pool2",
            "autoScalingGroupProvider": {"autoScalingGroupArn": "arn:aws:autoscaling:us-east-1:000000000000:autoScalingGroup:1:autoScalingGroupName/asg2",
                "managedScaling": {"status": "DISABLED", "targetCapacity": 90},
                "managedTerminationProtection": "DISABLED", "managedDraining": "ENABLED"},
            "tags": [{"key": "k", "value": "v"}]})],
        (Service::Ecs, "DescribeCapacityProviders") => vec![
            json!({"capacityProviders": ["pool", "FARGATE", "nope"], "include": ["TAGS"]}),
            json!({"cluster": "fuzz", "maxResults": 1}),
        ],
        (Service::Ecs, "UpdateCapacityProvider") => vec![json!({"name": "pool",
            "autoScalingGroupProvider": {"managedDraining": "DISABLED"}})],
        (Service::Ecs, "DeleteCapacityProvider") => vec![json!({"capacityProvider": "pool"})],
        (Service::Ecs, "PutClusterCapacityProviders") => vec![json!({"cluster": "fuzz",
            "capacityProviders": ["FARGATE", "FARGATE_SPOT", "pool"],
            "defaultCapacityProviderStrategy": [{"capacityProvider": "pool", "weight": 1, "base": 1}]})],
        (Service::Ecs, "CreateTaskSet") => vec![json!({"cluster": "fuzz", "service": "ext",
            "taskDefinition": "web:2", "externalId": "x", "launchType": "EC2",
            "scale": {"value": 50, "unit": "PERCENT"}, "clientToken": "t",
            "tags": [{"key": "k", "value": "v"}]})],
        (Service::Ecs, "DescribeTaskSets") => {
            vec![json!({"cluster": "fuzz", "service": "ext", "include": ["TAGS"]})]
        }
        (Service::Ecs, "UpdateTaskSet" | "DeleteTaskSet" | "UpdateServicePrimaryTaskSet") => {
            vec![
                json!({"cluster": "fuzz", "service": "ext", "taskSet": "ecs-svc/1",
                "primaryTaskSet": "ecs-svc/1", "scale": {"value": 10, "unit": "PERCENT"},
                "force": true}),
            ]
        }
        (Service::Ecs, "UpdateTaskProtection") => vec![json!({"cluster": "fuzz",
            "tasks": [task, "nope"], "protectionEnabled": true, "expiresInMinutes": 60})],
        (Service::Ecs, "GetTaskProtection") => vec![json!({"cluster": "fuzz", "tasks": [task]})],
        (Service::Ecs, "UpdateClusterSettings") => vec![json!({"cluster": "fuzz",
            "settings": [{"name": "containerInsights", "value": "enhanced"}]})],
        (Service::Ecs, "PutAccountSetting") => vec![json!({"name": "containerInsights",
            "value": "enabled", "principalArn": "arn:aws:iam::000000000000:root"})],
        (Service::Ecs, "PutAccountSettingDefault") => {
            vec![json!({"name": "defaultLogDriverMode", "value": "blocking"})]
        }
        (Service::Ecs, "DeleteAccountSetting") => vec![json!({"name": "containerInsights"})],
        (Service::Ecs, "ListAccountSettings") => vec![json!({"effectiveSettings": true,
            "name": "containerInsights", "value": "disabled", "maxResults": 2})],
        (Service::Ecs, "ListAttributes") => vec![json!({"cluster": "fuzz",
            "targetType": "container-instance", "attributeName": "color", "maxResults": 5})],
        (Service::Logs, "CreateLogGroup") => {
            vec![json!({"logGroupName": "/g2", "tags": {"a": "b"}})]
        }
        (Service::Logs, "DeleteLogGroup") => vec![json!({"logGroupName": group})],
        (Service::Logs, "DescribeLogGroups") => vec![
            json!({"logGroupNamePrefix": "/fuzz", "limit": 1, "nextToken": "L2Z1eno"}),
            json!({"logGroupNamePattern": "fuzz", "limit": 50}),
        ],
        (Service::Logs, "CreateLogStream" | "DeleteLogStream") => {
            vec![json!({"logGroupName": group, "logStreamName": "s2"})]
        }
        (Service::Logs, "DescribeLogStreams") => vec![
            json!({"logGroupName": group, "logStreamNamePrefix": "s", "limit": 1}),
            json!({"logGroupIdentifier": group, "orderBy": "LastEventTime", "descending": true,
                   "nextToken": "czE"}),
        ],
        (Service::Logs, "PutLogEvents") => vec![json!({"logGroupName": group,
            "logStreamName": "s1", "logEvents": events, "sequenceToken": "1"})],
        (Service::Logs, "GetLogEvents") => vec![json!({"logGroupName": group,
            "logStreamName": "s1", "startTime": NOW - 5, "endTime": NOW + 1, "limit": 2,
            "startFromHead": true, "nextToken": "f/000000000000000000000000000000000000001"})],
        (Service::Logs, "FilterLogEvents") => vec![
            json!({"logGroupName": group, "logStreamNames": ["s1"], "startTime": NOW - 5,
                   "endTime": NOW, "filterPattern": "{ $.a = 1 }", "limit": 10}),
            json!({"logGroupIdentifier": group, "logStreamNamePrefix": "s",
                   "filterPattern": "[a, b, c != 300]", "nextToken": "1"}),
        ],
        (Service::Logs, "PutRetentionPolicy") => {
            vec![json!({"logGroupName": group, "retentionInDays": 7})]
        }
        (Service::Logs, "DeleteRetentionPolicy" | "ListTagsLogGroup") => {
            vec![json!({"logGroupName": group})]
        }
        (Service::Logs, "TagResource" | "UntagResource" | "ListTagsForResource") => {
            vec![json!({"resourceArn":
                "arn:aws:logs:us-east-1:000000000000:log-group:/fuzz/group",
                "tags": {"a": "b"}, "tagKeys": ["a"]})]
        }
        (Service::Logs, "TagLogGroup" | "UntagLogGroup") => {
            vec![json!({"logGroupName": group, "tags": {"a": "b"}})]
        }
        (Service::Agent, "Poll") => vec![json!({"cluster": "fuzz",
            "containerInstanceArn": instance, "afterRevision": 1, "waitMillis": 10})],
        (Service::Agent, "PollInstances") => vec![json!({"cluster": "fuzz",
            "containerInstanceArns": [instance], "afterRevision": 3, "waitMillis": 10})],
        (Service::Agent, "ReportTaskState") => vec![report],
        (Service::Agent, "ReportTaskStates") => vec![json!({"reports": [report, report]})],
        (Service::Agent, "Disconnect") => vec![json!({"cluster": "fuzz",
            "containerInstanceArn": instance, "reason": "docker went away"})],
        (Service::Admin, "CreateJoinToken") => vec![json!({"cluster": "fuzz",
            "description": "rack", "expiresInSeconds": 3600})],
        (Service::Admin, "ListJoinTokens") => vec![json!({"cluster": "fuzz"})],
        (Service::Admin, "RevokeJoinToken") => vec![json!({"tokenId": "00112233aabbccdd"})],
        (Service::Admin, "InterruptSpotTasks") => vec![
            json!({"cluster": "fuzz", "tasks": [task, "nope"]}),
            json!({"cluster": "fuzz", "service": "svc"}),
        ],
        (Service::Join, "Join") => vec![json!({"token": "wharf-join.00112233aabbccdd.ff"})],
        (Service::Iam, "CreateUser") => vec![json!({"UserName": "u2", "Path": "/team/",
            "Tags": [{"Key": "team", "Value": "web"}]})],
        (Service::Iam, "CreateRole") => {
            vec![json!({"RoleName": "r2", "AssumeRolePolicyDocument": trust,
            "MaxSessionDuration": 7200, "Description": "d"})]
        }
        (Service::Iam, "CreatePolicy") => {
            vec![json!({"PolicyName": "p2", "PolicyDocument": allow})]
        }
        (Service::Iam, "CreatePolicyVersion") => {
            vec![json!({"PolicyArn": policy, "PolicyDocument": allow,
            "SetAsDefault": true})]
        }
        (Service::Iam, "PutUserPolicy" | "PutRolePolicy" | "PutGroupPolicy") => vec![json!({
            "UserName": "fuzz-user", "RoleName": "fuzz-role", "GroupName": "fuzz-group",
            "PolicyName": "p", "PolicyDocument": allow})],
        (
            Service::Iam,
            "AttachUserPolicy" | "AttachRolePolicy" | "AttachGroupPolicy" | "DetachUserPolicy"
            | "DetachRolePolicy" | "DetachGroupPolicy",
        ) => vec![json!({
            "UserName": "fuzz-user", "RoleName": "fuzz-role", "GroupName": "fuzz-group",
            "PolicyArn": policy})],
        (Service::Iam, "AddUserToGroup" | "RemoveUserFromGroup") => vec![json!({
            "UserName": "fuzz-user", "GroupName": "fuzz-group"})],
        (Service::Iam, "UpdateAssumeRolePolicy") => {
            vec![json!({"RoleName": "fuzz-role", "PolicyDocument": trust})]
        }
        (Service::Sts, "AssumeRole") => vec![
            json!({"RoleArn": "arn:aws:iam::000000000000:role/fuzz-role",
            "RoleSessionName": "s", "DurationSeconds": 900, "Policy": allow,
            "Tags": [{"Key": "k", "Value": "v"}]}),
        ],
        (Service::Sts, "GetSessionToken") => vec![json!({"DurationSeconds": 900})],
        _ => vec![],
    }
}
