"""IAM and STS against the real binary: users, keys, roles and policies made
through the IAM API decide what each caller may do on every service, as
IAM's evaluation logic does."""
import json
import os
import subprocess

import boto3
import botocore.exceptions
import pytest

from conftest import KEY, REGION, SECRET, Wharf, wait_for

ACCOUNT = "000000000000"
ALLOW_ECS = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecs:*", "Resource": "*"}]}


def doc(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def client(w, service, creds):
    return boto3.client(service, endpoint_url=w.url, region_name=REGION, aws_access_key_id=creds[0],
                        aws_secret_access_key=creds[1], aws_session_token=creds[2] if len(creds) > 2 else None)


def refused(call, code, *fragments):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    err = e.value.response["Error"]
    assert err["Code"] == code, err
    for f in fragments:
        assert f in err["Message"], err
    return err


def allowed(call):
    """Past IAM: answered, or refused by the service itself (here: no host
    to place on), never AccessDenied."""
    try:
        call()
    except botocore.exceptions.ClientError as e:
        assert "AccessDenied" not in e.response["Error"]["Code"], e.response["Error"]


def user_with_key(iam, name, *policies):
    iam.create_user(UserName=name)
    for i, p in enumerate(policies):
        iam.put_user_policy(UserName=name, PolicyName=f"p{i}", PolicyDocument=p)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def test_a_users_policies_decide_what_it_may_call(wharf):
    iam = wharf.client("iam")
    creds = user_with_key(iam, "bob")
    bob_ecs, bob_logs = client(wharf, "ecs", creds), client(wharf, "logs", creds)
    assert client(wharf, "sts", creds).get_caller_identity()["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/bob"
    # Nothing allows anything yet.
    refused(bob_ecs.list_clusters, "AccessDeniedException",
            f"User: arn:aws:iam::{ACCOUNT}:user/bob is not authorized to perform: ecs:ListClusters on resource: *",
            "because no identity-based policy allows the ecs:ListClusters action")
    # An AWS managed policy attached by ARN.
    iam.attach_user_policy(UserName="bob", PolicyArn="arn:aws:iam::aws:policy/AmazonECS_FullAccess")
    assert bob_ecs.list_clusters()["clusterArns"] == []
    bob_ecs.create_cluster(clusterName="prod")
    # An explicit Deny wins over the Allow.
    iam.put_user_policy(UserName="bob", PolicyName="no-run", PolicyDocument=doc(
        {"Effect": "Deny", "Action": "ecs:RunTask", "Resource": "*"}))
    refused(lambda: bob_ecs.run_task(cluster="prod", taskDefinition="web:1"), "AccessDeniedException",
            f"ecs:RunTask on resource: arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/web:1",
            "with an explicit deny in an identity-based policy")
    # Logs are judged too: the ECS policy grants logs:* but the read-only one would not write.
    bob_logs.create_log_group(logGroupName="/bob")
    iam.detach_user_policy(UserName="bob", PolicyArn="arn:aws:iam::aws:policy/AmazonECS_FullAccess")
    iam.attach_user_policy(UserName="bob", PolicyArn="arn:aws:iam::aws:policy/CloudWatchLogsReadOnlyAccess")
    assert [g["logGroupName"] for g in bob_logs.describe_log_groups()["logGroups"]] == ["/bob"]
    refused(lambda: bob_logs.create_log_group(logGroupName="/bob2"), "AccessDeniedException",
            f"logs:CreateLogGroup on resource: arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/bob2")
    refused(bob_ecs.list_clusters, "AccessDeniedException")
    # IAM itself is judged (awsQuery's error shape).
    refused(lambda: client(wharf, "iam", creds).list_users(), "AccessDenied", "iam:ListUsers")
    # A deactivated key stops working; a deleted one is gone.
    iam.update_access_key(UserName="bob", AccessKeyId=creds[0], Status="Inactive")
    refused(bob_logs.describe_log_groups, "UnrecognizedClientException")
    iam.delete_access_key(UserName="bob", AccessKeyId=creds[0])
    assert iam.list_access_keys(UserName="bob")["AccessKeyMetadata"] == []


def test_resource_patterns_conditions_groups_and_variables(wharf):
    iam = wharf.client("iam")
    ecs = wharf.client()
    for c in ("prod-web", "prod-db", "dev"):
        ecs.create_cluster(clusterName=c)
    creds = user_with_key(iam, "carol", doc(
        {"Effect": "Allow", "Action": "ecs:DescribeClusters", "Resource": f"arn:aws:ecs:*:{ACCOUNT}:cluster/prod-*"},
        {"Effect": "Allow", "Action": "ecs:ListServices", "Resource": "*",
         "Condition": {"ArnLike": {"ecs:cluster": f"arn:aws:ecs:{REGION}:*:cluster/prod-*"}}},
        {"Effect": "Allow", "Action": "ecs:TagResource", "Resource": "*",
         "Condition": {"StringEquals": {"aws:RequestTag/owner": "${aws:username}"},
                       "ForAllValues:StringEquals": {"aws:TagKeys": ["owner", "team"]}}}))
    carol = client(wharf, "ecs", creds)
    assert [c["clusterName"] for c in carol.describe_clusters(clusters=["prod-web", "prod-db"])["clusters"]] == \
        ["prod-web", "prod-db"]
    refused(lambda: carol.describe_clusters(clusters=["prod-web", "dev"]), "AccessDeniedException",
            f"cluster/dev")
    carol.list_services(cluster="prod-db")
    refused(lambda: carol.list_services(cluster="dev"), "AccessDeniedException", "ecs:ListServices")
    arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/dev"
    carol.tag_resource(resourceArn=arn, tags=[{"key": "owner", "value": "carol"}, {"key": "team", "value": "x"}])
    refused(lambda: carol.tag_resource(resourceArn=arn, tags=[{"key": "owner", "value": "bob"}]),
            "AccessDeniedException")
    refused(lambda: carol.tag_resource(resourceArn=arn, tags=[{"key": "owner", "value": "carol"},
                                                              {"key": "cost", "value": "1"}]),
            "AccessDeniedException")
    # A group's policies apply to its members, and stop when they leave.
    iam.create_group(GroupName="ops")
    iam.put_group_policy(GroupName="ops", PolicyName="all", PolicyDocument=json.dumps(ALLOW_ECS))
    refused(carol.list_clusters, "AccessDeniedException")
    iam.add_user_to_group(GroupName="ops", UserName="carol")
    assert len(carol.list_clusters()["clusterArns"]) == 3
    assert [u["UserName"] for u in iam.get_group(GroupName="ops")["Users"]] == ["carol"]
    refused(lambda: iam.delete_group(GroupName="ops"), "DeleteConflict")
    iam.remove_user_from_group(GroupName="ops", UserName="carol")
    refused(carol.list_clusters, "AccessDeniedException")
    # A permissions boundary caps what the identity policies grant.
    iam.add_user_to_group(GroupName="ops", UserName="carol")
    iam.put_user_permissions_boundary(UserName="carol",
                                      PermissionsBoundary="arn:aws:iam::aws:policy/ReadOnlyAccess")
    carol.list_clusters()
    refused(lambda: carol.create_cluster(clusterName="x"), "AccessDeniedException",
            "because no permissions boundary allows the ecs:CreateCluster action")


def test_roles_are_assumed_as_their_trust_policies_allow(wharf):
    iam, sts = wharf.client("iam"), wharf.client("sts")
    dave = user_with_key(iam, "dave")
    erin = user_with_key(iam, "erin", doc({"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}))
    trust = doc({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/dave"},
                 "Action": "sts:AssumeRole"},
                {"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"})
    role = iam.create_role(RoleName="deployer", AssumeRolePolicyDocument=trust, MaxSessionDuration=7200)["Role"]
    # SDKs decode the URL-encoded policy document IAM returns.
    assert iam.get_role(RoleName="deployer")["Role"]["AssumeRolePolicyDocument"] == json.loads(trust)
    iam.attach_role_policy(RoleName="deployer", PolicyArn="arn:aws:iam::aws:policy/ReadOnlyAccess")
    # Dave is named by the trust policy: no permission of his own is needed.
    out = client(wharf, "sts", dave).assume_role(RoleArn=role["Arn"], RoleSessionName="ci", DurationSeconds=3600)
    c = out["Credentials"]
    assert out["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/deployer/ci"
    assert c["AccessKeyId"].startswith("ASIA")
    session = (c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
    ident = client(wharf, "sts", session).get_caller_identity()
    assert ident["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/deployer/ci"
    assert ident["UserId"] == f"{role['RoleId']}:ci"
    # The session can do what the role allows, nothing more.
    as_role = client(wharf, "ecs", session)
    as_role.list_clusters()
    refused(lambda: as_role.create_cluster(clusterName="x"), "AccessDeniedException",
            f"arn:aws:sts::{ACCOUNT}:assumed-role/deployer/ci is not authorized to perform: ecs:CreateCluster")
    # A wrong token, or none, is refused.
    refused(client(wharf, "ecs", (c["AccessKeyId"], c["SecretAccessKey"], "forged")).list_clusters,
            "UnrecognizedClientException")
    refused(client(wharf, "ecs", (c["AccessKeyId"], c["SecretAccessKey"])).list_clusters,
            "UnrecognizedClientException")
    # The account is trusted too, so a user whose own policy allows AssumeRole may.
    client(wharf, "sts", erin).assume_role(RoleArn=role["Arn"], RoleSessionName="erin")
    frank = user_with_key(iam, "frank")
    refused(lambda: client(wharf, "sts", frank).assume_role(RoleArn=role["Arn"], RoleSessionName="ff"),
            "AccessDenied", f"arn:aws:iam::{ACCOUNT}:user/frank is not authorized to perform: sts:AssumeRole")
    # A session policy narrows the session further.
    narrowed = client(wharf, "sts", dave).assume_role(
        RoleArn=role["Arn"], RoleSessionName="narrow",
        Policy=doc({"Effect": "Allow", "Action": "ecs:DescribeClusters", "Resource": "*"}))["Credentials"]
    narrow = client(wharf, "ecs", (narrowed["AccessKeyId"], narrowed["SecretAccessKey"], narrowed["SessionToken"]))
    narrow.describe_clusters(clusters=["default"])
    refused(narrow.list_clusters, "AccessDeniedException", "because no session policy allows")
    # Beyond the role's maximum, and for a role that does not exist.
    refused(lambda: client(wharf, "sts", dave).assume_role(RoleArn=role["Arn"], RoleSessionName="xx",
                                                           DurationSeconds=7201), "ValidationError")
    refused(lambda: sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/nope", RoleSessionName="xx"),
            "AccessDenied")
    # A deleted role's sessions end with it.
    iam.detach_role_policy(RoleName="deployer", PolicyArn="arn:aws:iam::aws:policy/ReadOnlyAccess")
    iam.delete_role(RoleName="deployer")
    refused(as_role.list_clusters, "UnrecognizedClientException")
    # GetSessionToken gives a user temporary credentials that act as the user.
    t = client(wharf, "sts", erin).get_session_token(DurationSeconds=900)["Credentials"]
    temp = (t["AccessKeyId"], t["SecretAccessKey"], t["SessionToken"])
    assert client(wharf, "sts", temp).get_caller_identity()["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/erin"
    refused(lambda: client(wharf, "sts", temp).get_session_token(), "AccessDenied")


def test_pass_role_is_checked_when_a_task_definition_names_a_role(wharf):
    iam = wharf.client("iam")
    creds = user_with_key(iam, "gina", json.dumps(ALLOW_ECS))
    gina = client(wharf, "ecs", creds)
    role = f"arn:aws:iam::{ACCOUNT}:role/app"
    containers = [{"name": "a", "image": "busybox", "memory": 32}]
    refused(lambda: gina.register_task_definition(family="web", taskRoleArn=role, containerDefinitions=containers),
            "AccessDeniedException", f"iam:PassRole on resource: {role}")
    iam.put_user_policy(UserName="gina", PolicyName="pass", PolicyDocument=doc(
        {"Effect": "Allow", "Action": "iam:PassRole", "Resource": role,
         "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}}))
    gina.register_task_definition(family="web", taskRoleArn=role, containerDefinitions=containers)
    # Starting tasks of a registered task definition hands its roles to ECS too.
    wharf.client().create_cluster(clusterName="default")
    wharf.client().register_task_definition(family="admin", taskRoleArn=f"arn:aws:iam::{ACCOUNT}:role/admin",
                                            containerDefinitions=containers)
    refused(lambda: gina.run_task(taskDefinition="admin"), "AccessDeniedException",
            f"iam:PassRole on resource: arn:aws:iam::{ACCOUNT}:role/admin")
    refused(lambda: gina.create_service(serviceName="s", taskDefinition="admin:1", desiredCount=0),
            "AccessDeniedException", "iam:PassRole")
    allowed(lambda: gina.run_task(taskDefinition="web"))
    # A bare family is judged on the revision it resolves to.
    iam.put_user_policy(UserName="gina", PolicyName="p0", PolicyDocument=doc(
        {"Effect": "Allow", "Action": "ecs:RunTask", "Resource": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/web:1"},
        {"Effect": "Allow", "Action": "ecs:RegisterTaskDefinition", "Resource": "*"}))
    allowed(lambda: gina.run_task(taskDefinition="web"))
    gina.register_task_definition(family="web", taskRoleArn=role, containerDefinitions=containers)
    refused(lambda: gina.run_task(taskDefinition="web"), "AccessDeniedException",
            f"task-definition/web:2")


def test_iam_api_errors_versions_and_paging(wharf):
    iam = wharf.client("iam")
    for n in ("u1", "u2", "u3", "U4"):
        iam.create_user(UserName=n, Path="/team/" if n == "u2" else "/")
    refused(lambda: iam.create_user(UserName="u4"), "EntityAlreadyExists", "User with name u4 already exists.")
    refused(lambda: iam.get_user(UserName="nope"), "NoSuchEntity", "The user with name nope cannot be found.")
    first = iam.list_users(MaxItems=2)
    assert first["IsTruncated"] and len(first["Users"]) == 2
    rest = iam.list_users(Marker=first["Marker"])
    assert [u["UserName"] for u in first["Users"] + rest["Users"]] == ["u1", "u2", "u3", "U4"]
    assert [u["UserName"] for u in iam.list_users(PathPrefix="/team/")["Users"]] == ["u2"]
    paged = [u["UserName"] for page in iam.get_paginator("list_users").paginate(PaginationConfig={"PageSize": 1})
             for u in page["Users"]]
    assert paged == ["u1", "u2", "u3", "U4"]
    refused(lambda: iam.put_user_policy(UserName="u1", PolicyName="bad", PolicyDocument='{"Statement": []}'),
            "MalformedPolicyDocument")
    refused(lambda: iam.put_user_policy(UserName="u1", PolicyName="bad", PolicyDocument=doc(
        {"Effect": "Allow", "Action": "ecs:*", "Resource": "*", "Condition": {"StringSortOf": {"a:b": "c"}}})),
        "MalformedPolicyDocument", "StringSortOf")
    # Managed policy versions: five at most, one default, the default not deletable.
    arn = iam.create_policy(PolicyName="ops", PolicyDocument=json.dumps(ALLOW_ECS))["Policy"]["Arn"]
    assert arn == f"arn:aws:iam::{ACCOUNT}:policy/ops"
    for _ in range(4):
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(ALLOW_ECS))
    refused(lambda: iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(ALLOW_ECS)), "LimitExceeded")
    versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
    assert [v["VersionId"] for v in versions] == ["v5", "v4", "v3", "v2", "v1"]
    assert [v["IsDefaultVersion"] for v in versions] == [False, False, False, False, True]
    iam.set_default_policy_version(PolicyArn=arn, VersionId="v3")
    refused(lambda: iam.delete_policy_version(PolicyArn=arn, VersionId="v3"), "DeleteConflict")
    assert iam.get_policy_version(PolicyArn=arn, VersionId="v3")["PolicyVersion"]["Document"] == ALLOW_ECS
    iam.attach_user_policy(UserName="u1", PolicyArn=arn)
    assert iam.get_policy(PolicyArn=arn)["Policy"]["AttachmentCount"] == 1
    entities = iam.list_entities_for_policy(PolicyArn=arn)
    assert [u["UserName"] for u in entities["PolicyUsers"]] == ["u1"]
    refused(lambda: iam.delete_policy(PolicyArn=arn), "DeleteConflict")
    refused(lambda: iam.delete_user(UserName="u1"), "DeleteConflict")
    iam.detach_user_policy(UserName="u1", PolicyArn=arn)
    for v in ("v1", "v2", "v4", "v5"):
        iam.delete_policy_version(PolicyArn=arn, VersionId=v)
    iam.delete_policy(PolicyArn=arn)
    iam.delete_user(UserName="u1")
    refused(lambda: iam.attach_user_policy(UserName="u2", PolicyArn=f"arn:aws:iam::{ACCOUNT}:policy/ops"),
            "NoSuchEntity")
    assert "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy" in [
        p["Arn"] for p in iam.list_policies(Scope="AWS", MaxItems=1000)["Policies"]]
    refused(lambda: iam.create_role(RoleName="r", AssumeRolePolicyDocument=json.dumps(ALLOW_ECS)),
            "MalformedPolicyDocument")
    # What Wharf does not implement says so.
    refused(lambda: iam.create_login_profile(UserName="u2", Password="x" * 20), "NotImplemented", "CreateLoginProfile")


def test_keys_roles_and_sessions_survive_kill_9(tmp_path):
    w = Wharf(tmp_path / "data")
    w.start()
    try:
        iam = w.client("iam")
        creds = user_with_key(iam, "hal", json.dumps(ALLOW_ECS))
        iam.create_role(RoleName="r", AssumeRolePolicyDocument=doc(
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/hal"}, "Action": "sts:AssumeRole"}))
        c = client(w, "sts", creds).assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/r",
                                                RoleSessionName="ss")["Credentials"]
        w.kill()
        w.start()
        assert client(w, "ecs", creds).list_clusters()["clusterArns"] == []
        session = (c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
        assert client(w, "sts", session).get_caller_identity()["Arn"].endswith("assumed-role/r/ss")
    finally:
        w.kill()


def aws_cli():
    """The aws CLI on PATH (v1 from pip, or Debian's v2)."""
    return "aws"


def test_done_when_with_the_aws_cli(wharf, tmp_path):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION=REGION)
    env.pop("AWS_SESSION_TOKEN", None)

    def cli(*args, env=env, ok=True):
        r = subprocess.run([aws_cli(), "--endpoint-url", wharf.url, "--output", "json", *args],
                           env=env, capture_output=True, text=True, timeout=60)
        assert (r.returncode == 0) == ok, r.stderr
        return json.loads(r.stdout) if ok and r.stdout.strip() else r.stderr

    cli("iam", "create-user", "--user-name", "ivy")
    cli("iam", "put-user-policy", "--user-name", "ivy", "--policy-name", "p", "--policy-document", doc(
        {"Effect": "Allow", "Action": "ecs:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "ecs:RunTask", "Resource": "*"}))
    key = cli("iam", "create-access-key", "--user-name", "ivy")["AccessKey"]
    ivy = dict(env, AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"])
    assert cli("sts", "get-caller-identity", env=ivy)["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/ivy"
    err = cli("ecs", "run-task", "--task-definition", "web:1", env=ivy, ok=False)
    assert "AccessDeniedException" in err and "ecs:RunTask" in err
    cli("iam", "create-role", "--role-name", "task", "--assume-role-policy-document", doc(
        {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}))
    assert cli("iam", "get-role", "--role-name", "task")["Role"]["AssumeRolePolicyDocument"]["Statement"][0][
        "Principal"] == {"Service": "ecs-tasks.amazonaws.com"}


def test_no_way_around_a_policy(wharf):
    """What a caller must not get around: a session policy by chaining
    roles, GetSessionToken's limits, a name's case or path, the request's
    own condition keys in a trust policy, AssumeRole by the root."""
    iam, sts = wharf.client("iam"), wharf.client("sts")
    jo = user_with_key(iam, "jo", json.dumps(ALLOW_ECS), doc(
        {"Effect": "Allow", "Action": ["iam:*", "sts:*"], "Resource": "*"},
        {"Effect": "Deny", "Action": "iam:DeleteUser", "Resource": f"arn:aws:iam::{ACCOUNT}:user/admins/*"}))
    first = iam.create_role(RoleName="first", AssumeRolePolicyDocument=doc(
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/jo"}, "Action": "sts:AssumeRole"}))
    iam.attach_role_policy(RoleName="first", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    iam.create_role(RoleName="second", AssumeRolePolicyDocument=doc(
        {"Effect": "Allow", "Principal": {"AWS": first["Role"]["Arn"]}, "Action": "sts:AssumeRole"}))
    # A session narrowed to DescribeClusters cannot chain into a role that trusts its role.
    narrow = client(wharf, "sts", jo).assume_role(
        RoleArn=first["Role"]["Arn"], RoleSessionName="narrow",
        Policy=doc({"Effect": "Allow", "Action": "ecs:DescribeClusters", "Resource": "*"}))["Credentials"]
    narrow = (narrow["AccessKeyId"], narrow["SecretAccessKey"], narrow["SessionToken"])
    refused(lambda: client(wharf, "sts", narrow).assume_role(
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/second", RoleSessionName="chained"), "AccessDenied")
    # Unnarrowed, the role's own permission carries the chain.
    full = client(wharf, "sts", jo).assume_role(RoleArn=first["Role"]["Arn"], RoleSessionName="full")["Credentials"]
    full = (full["AccessKeyId"], full["SecretAccessKey"], full["SessionToken"])
    chained = client(wharf, "sts", full).assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/second",
                                                     RoleSessionName="chained")
    assert chained["AssumedRoleUser"]["Arn"].endswith("assumed-role/second/chained")
    # GetSessionToken's credentials cannot mint keys.
    t = client(wharf, "sts", jo).get_session_token()["Credentials"]
    temp = (t["AccessKeyId"], t["SecretAccessKey"], t["SessionToken"])
    refused(lambda: client(wharf, "iam", temp).create_access_key(UserName="jo"), "AccessDenied", "GetSessionToken")
    client(wharf, "ecs", temp).list_clusters()
    # A Deny on a path holds whatever case the request spells the name in.
    iam.create_user(UserName="Root-Admin", Path="/admins/")
    refused(lambda: client(wharf, "iam", jo).delete_user(UserName="root-admin"), "AccessDenied",
            f"user/admins/Root-Admin")
    # The request's keys reach trust policies: this one refuses plain HTTP.
    iam.create_role(RoleName="tls-only", AssumeRolePolicyDocument=doc(
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/jo"}, "Action": "sts:AssumeRole"},
        {"Effect": "Deny", "Principal": "*", "Action": "sts:AssumeRole",
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}}))
    refused(lambda: client(wharf, "sts", jo).assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/tls-only",
                                                         RoleSessionName="plain"),
            "AccessDenied", "explicit deny")
    # The root does not assume roles, as in AWS.
    refused(lambda: sts.assume_role(RoleArn=first["Role"]["Arn"], RoleSessionName="root"), "AccessDenied",
            "root accounts")


def test_resource_tags_are_condition_keys(wharf):
    """`aws:ResourceTag/…` and `ecs:ResourceTag/…` read the tags of the ECS
    resource a request acts on, as they are stored."""
    ecs, iam = wharf.client(), wharf.client("iam")
    ecs.create_cluster(clusterName="prod", tags=[{"key": "env", "value": "prod"}])
    ecs.create_cluster(clusterName="dev", tags=[{"key": "env", "value": "dev"}])
    creds = user_with_key(iam, "tagged", json.dumps(ALLOW_ECS), doc(
        {"Effect": "Deny", "Action": ["ecs:DeleteCluster", "ecs:DescribeClusters"], "Resource": "*",
         "Condition": {"StringEquals": {"aws:ResourceTag/env": "prod"}}}))
    mine = client(wharf, "ecs", creds)
    assert [c["clusterName"] for c in mine.describe_clusters(clusters=["dev"])["clusters"]] == ["dev"]
    refused(lambda: mine.describe_clusters(clusters=["dev", "prod"]), "AccessDeniedException",
            f"on resource: arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/prod with an explicit deny")
    refused(lambda: mine.delete_cluster(cluster="prod"), "AccessDeniedException")
    # An Allow that needs a tag (ecs: prefix), and a tag changed takes effect at once.
    only = user_with_key(iam, "only-team-a", doc(
        {"Effect": "Allow", "Action": "ecs:DescribeClusters", "Resource": "*",
         "Condition": {"StringEquals": {"ecs:ResourceTag/team": "a"}}}))
    refused(lambda: client(wharf, "ecs", only).describe_clusters(clusters=["dev"]), "AccessDeniedException")
    ecs.tag_resource(resourceArn=f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/dev", tags=[{"key": "team", "value": "a"}])
    assert client(wharf, "ecs", only).describe_clusters(clusters=["dev"])["clusters"][0]["clusterName"] == "dev"
    mine.delete_cluster(cluster="dev")


def test_the_source_address_is_a_condition_key(wharf):
    """`aws:SourceIp` is the address the request came from (here loopback)."""
    iam = wharf.client("iam")
    inside = user_with_key(iam, "inside", doc(
        {"Effect": "Allow", "Action": "ecs:ListClusters", "Resource": "*",
         "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}}))
    outside = user_with_key(iam, "outside", json.dumps(ALLOW_ECS), doc(
        {"Effect": "Deny", "Action": "*", "Resource": "*",
         "Condition": {"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.168.0.0/16"]}}}))
    client(wharf, "ecs", inside).list_clusters()
    refused(lambda: client(wharf, "ecs", outside).list_clusters(), "AccessDeniedException", "explicit deny")
