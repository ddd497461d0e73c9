"""Secrets Manager, SSM Parameter Store and a task's `secrets` against the
real binary: the APIs as boto3 and the aws CLI use them, values sealed at
rest and kept across a kill -9, IAM deciding who reads what, and a task on
real Docker finding its secrets in its environment, read with its
execution role, and nowhere else."""
import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import boto3
import botocore.exceptions
import pytest

from conftest import KEY, REGION, SECRET, Wharf, free_port
from test_agent_features import container_ids
from test_docker import wait_instance

ACCOUNT = "000000000000"
IMAGE = "wharf-test/busybox:latest"


def doc(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def refused(call, code, *fragments):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    err = e.value.response["Error"]
    assert err["Code"] == code, err
    for f in fragments:
        assert f in err["Message"], err
    return e.value.response


def cli(w, *args, ok=True):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION=REGION)
    env.pop("AWS_SESSION_TOKEN", None)
    r = subprocess.run(["aws", "--endpoint-url", w.url, "--output", "json", *args],
                       env=env, capture_output=True, text=True, timeout=60)
    assert (r.returncode == 0) == ok, r.stderr
    return json.loads(r.stdout) if ok and r.stdout.strip() else r.stderr


def user(w, name, *statements):
    iam = w.client("iam")
    iam.create_user(UserName=name)
    if statements:
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=doc(*statements))
    k = iam.create_access_key(UserName=name)["AccessKey"]
    return lambda service: boto3.client(service, endpoint_url=w.url, region_name=REGION,
                                        aws_access_key_id=k["AccessKeyId"],
                                        aws_secret_access_key=k["SecretAccessKey"])


def test_secrets_manager_versions_stages_and_deletion(wharf):
    sm = wharf.client("secretsmanager")
    made = sm.create_secret(Name="prod/db", SecretString='{"user":"app","password":"first-pw"}',
                            Description="the database", Tags=[{"Key": "team", "Value": "data"}])
    arn = made["ARN"]
    assert arn.startswith(f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/db-") and len(arn.rsplit("-", 1)[1]) == 6
    for secret_id in ("prod/db", arn, arn.rsplit("-", 1)[0]):
        assert json.loads(sm.get_secret_value(SecretId=secret_id)["SecretString"])["password"] == "first-pw"
    second = sm.put_secret_value(SecretId="prod/db", SecretString='{"user":"app","password":"second-pw"}')
    assert second["VersionStages"] == ["AWSCURRENT"]
    previous = sm.get_secret_value(SecretId="prod/db", VersionStage="AWSPREVIOUS")
    assert previous["VersionId"] == made["VersionId"] and "first-pw" in previous["SecretString"]
    described = sm.describe_secret(SecretId=arn)
    assert described["VersionIdsToStages"] == {made["VersionId"]: ["AWSPREVIOUS"], second["VersionId"]: ["AWSCURRENT"]}
    assert described["Tags"] == [{"Key": "team", "Value": "data"}] and described["Description"] == "the database"
    # The aws CLI, and its paginated, filtered listing.
    sm.create_secret(Name="prod/api", SecretString="k")
    sm.create_secret(Name="dev/api", SecretString="k")
    assert cli(wharf, "secretsmanager", "get-secret-value", "--secret-id", "prod/db")["VersionId"] == second["VersionId"]
    names = [s["Name"] for s in cli(wharf, "secretsmanager", "list-secrets", "--filters", "Key=name,Values=prod/",
                                     "--page-size", "1")["SecretList"]]
    assert sorted(names) == ["prod/api", "prod/db"]
    # Errors as Secrets Manager gives them.
    r = refused(lambda: sm.get_secret_value(SecretId="nope"), "ResourceNotFoundException",
                "Secrets Manager can't find the specified secret.")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 400
    refused(lambda: sm.create_secret(Name="prod/db", SecretString="x"), "ResourceExistsException")
    # Deletion waits out its recovery window; a restore brings it back.
    deleted = sm.delete_secret(SecretId="prod/api", RecoveryWindowInDays=7)
    assert deleted["DeletionDate"] > described["CreatedDate"]
    refused(lambda: sm.get_secret_value(SecretId="prod/api"), "InvalidRequestException", "marked for deletion")
    assert "prod/api" not in [s["Name"] for s in sm.list_secrets()["SecretList"]]
    sm.restore_secret(SecretId="prod/api")
    assert sm.get_secret_value(SecretId="prod/api")["SecretString"] == "k"
    sm.delete_secret(SecretId="dev/api", ForceDeleteWithoutRecovery=True)
    refused(lambda: sm.describe_secret(SecretId="dev/api"), "ResourceNotFoundException")
    refused(lambda: sm.rotate_secret(SecretId="prod/db"), "InvalidRequestException", "rotate")


def test_parameter_store_versions_paths_and_secure_strings(wharf):
    ssm = wharf.client("ssm")
    assert ssm.put_parameter(Name="/app/db/host", Value="db.local", Type="String")["Version"] == 1
    ssm.put_parameter(Name="/app/db/password", Value="s3cret-pw", Type="SecureString")
    ssm.put_parameter(Name="/app/hosts", Value="a,b", Type="StringList")
    refused(lambda: ssm.put_parameter(Name="/app/db/host", Value="x", Type="String"), "ParameterAlreadyExists")
    assert ssm.put_parameter(Name="/app/db/host", Value="db2.local", Overwrite=True)["Version"] == 2
    hidden = ssm.get_parameter(Name="/app/db/password")["Parameter"]
    assert hidden["Type"] == "SecureString" and hidden["Value"] != "s3cret-pw"
    assert ssm.get_parameter(Name="/app/db/password", WithDecryption=True)["Parameter"]["Value"] == "s3cret-pw"
    assert ssm.get_parameter(Name="/app/db/host:1")["Parameter"]["Value"] == "db.local"
    ssm.label_parameter_version(Name="/app/db/host", ParameterVersion=1, Labels=["old"])
    assert ssm.get_parameter(Name="/app/db/host:old")["Parameter"]["Value"] == "db.local"
    under = ssm.get_parameters_by_path(Path="/app", Recursive=True, WithDecryption=True)["Parameters"]
    assert {p["Name"]: p["Value"] for p in under} == {
        "/app/db/host": "db2.local", "/app/db/password": "s3cret-pw", "/app/hosts": "a,b"}
    assert [p["Name"] for p in ssm.get_parameters_by_path(Path="/app")["Parameters"]] == ["/app/hosts"]
    history = ssm.get_parameter_history(Name="/app/db/host")["Parameters"]
    assert [(h["Version"], h["Value"], h.get("Labels", [])) for h in history] == [
        (1, "db.local", ["old"]), (2, "db2.local", [])]
    got = ssm.get_parameters(Names=["/app/db/host", "/app/missing"])
    assert [p["Name"] for p in got["Parameters"]] == ["/app/db/host"] and got["InvalidParameters"] == ["/app/missing"]
    # The aws CLI; and DescribeParameters pages through it.
    out = cli(wharf, "ssm", "get-parameter", "--name", "/app/db/password", "--with-decryption")
    assert out["Parameter"]["Value"] == "s3cret-pw"
    assert out["Parameter"]["ARN"] == f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/app/db/password"
    described = cli(wharf, "ssm", "describe-parameters", "--page-size", "1")["Parameters"]
    assert sorted(p["Name"] for p in described) == ["/app/db/host", "/app/db/password", "/app/hosts"]
    ssm.delete_parameter(Name="/app/hosts")
    refused(lambda: ssm.get_parameter(Name="/app/hosts"), "ParameterNotFound")


def test_values_are_sealed_at_rest_and_kept_across_kill_9(tmp_path):
    w = Wharf(tmp_path / "data")
    w.start()
    try:
        w.client("secretsmanager").create_secret(Name="s", SecretString="plaintext-in-a-secret")
        w.client("ssm").put_parameter(Name="p", Value="plaintext-in-a-parameter", Type="String")
        w.client("ssm").put_parameter(Name="q", Value="plaintext-in-a-secure-one", Type="SecureString")
    finally:
        w.kill()
    key = tmp_path / "data" / "secrets.key"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    stored = (tmp_path / "data" / "store.redb").read_bytes()
    assert b"plaintext-in-a" not in stored
    w.start()
    try:
        assert w.client("secretsmanager").get_secret_value(SecretId="s")["SecretString"] == "plaintext-in-a-secret"
        assert w.client("ssm").get_parameter(Name="q", WithDecryption=True)["Parameter"]["Value"] == \
            "plaintext-in-a-secure-one"
    finally:
        w.kill()
    # Under another key the server does not start (it would seal new
    # values under it and open none of the old), and says why.
    other = tmp_path / "other.key"
    other.write_text("ab" * 32 + "\n")
    w2 = Wharf(tmp_path / "data", args=["--secrets-key-file", str(other)])
    with pytest.raises(RuntimeError):
        w2.start()
    w2.log.close()
    assert "the secrets key does not open this store's secrets" in open(w2.log.name).read()
    # The key given by file works as the data directory's does.
    w3 = Wharf(tmp_path / "data", args=["--secrets-key-file", str(key)])
    w3.start()
    try:
        assert w3.client("secretsmanager").get_secret_value(SecretId="s")["SecretString"] == "plaintext-in-a-secret"
    finally:
        w3.kill()


def test_iam_and_resource_policies_decide_who_reads_a_secret(wharf):
    sm = wharf.client("secretsmanager")
    app = sm.create_secret(Name="app/key", SecretString="v")["ARN"]
    other = sm.create_secret(Name="other/key", SecretString="v")["ARN"]
    reader = user(wharf, "reader", {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                                    "Resource": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:app/*"})
    # Judged on the secret's full ARN, however the request names it.
    assert reader("secretsmanager").get_secret_value(SecretId="app/key")["SecretString"] == "v"
    refused(lambda: reader("secretsmanager").get_secret_value(SecretId="other/key"), "AccessDeniedException",
            f"User: arn:aws:iam::{ACCOUNT}:user/reader is not authorized to perform: secretsmanager:GetSecretValue "
            f"on resource: {other}")
    # A resource policy grants on its own within the account, and its Deny wins.
    nobody = user(wharf, "nobody")
    refused(lambda: nobody("secretsmanager").get_secret_value(SecretId="other/key"), "AccessDeniedException")
    # Naming the account only delegates to each caller's own policies.
    sm.put_resource_policy(SecretId="other/key", ResourcePolicy=doc(
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
         "Action": "secretsmanager:GetSecretValue", "Resource": "*"}))
    refused(lambda: nobody("secretsmanager").get_secret_value(SecretId="other/key"), "AccessDeniedException")
    # A tag on the secret is a condition key.
    sm.tag_resource(SecretId="app/key", Tags=[{"Key": "class", "Value": "restricted"}])
    wharf.client("iam").put_user_policy(UserName="reader", PolicyName="tags", PolicyDocument=doc(
        {"Effect": "Deny", "Action": "secretsmanager:*", "Resource": "*",
         "Condition": {"StringEquals": {"aws:ResourceTag/class": "restricted"}}}))
    refused(lambda: reader("secretsmanager").describe_secret(SecretId="app/key"), "AccessDeniedException",
            "explicit deny in an identity-based policy")
    wharf.client("iam").delete_user_policy(UserName="reader", PolicyName="tags")
    sm.put_resource_policy(SecretId="other/key", ResourcePolicy=doc(
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/nobody"},
         "Action": "secretsmanager:GetSecretValue", "Resource": "*"}))
    assert nobody("secretsmanager").get_secret_value(SecretId="other/key")["SecretString"] == "v"
    sm.put_resource_policy(SecretId="app/key", ResourcePolicy=doc(
        {"Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/reader"},
         "Action": "secretsmanager:GetSecretValue", "Resource": "*"}))
    refused(lambda: reader("secretsmanager").get_secret_value(SecretId=app), "AccessDeniedException",
            "explicit deny in a resource-based policy")
    # BatchGetSecretValue (itself allowed) judges each secret as GetSecretValue.
    wharf.client("iam").put_user_policy(UserName="nobody", PolicyName="batch", PolicyDocument=doc(
        {"Effect": "Allow", "Action": "secretsmanager:BatchGetSecretValue", "Resource": "*"}))
    both = nobody("secretsmanager").batch_get_secret_value(SecretIdList=["other/key", "app/key"])
    assert [v["Name"] for v in both["SecretValues"]] == ["other/key"]
    assert [e["ErrorCode"] for e in both["Errors"]] == ["AccessDeniedException"]
    # Parameters: by the parameter's ARN.
    wharf.client("ssm").put_parameter(Name="/team/a", Value="1", Type="String")
    wharf.client("ssm").put_parameter(Name="/other/b", Value="2", Type="String")
    ops = user(wharf, "ops", {"Effect": "Allow", "Action": "ssm:GetParameter*",
                              "Resource": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/team/*"})
    assert ops("ssm").get_parameter(Name="/team/a")["Parameter"]["Value"] == "1"
    refused(lambda: ops("ssm").get_parameter(Name="/other/b"), "AccessDeniedException", "parameter/other/b")


def run_and_wait(ecs, family):
    arn = ecs.run_task(taskDefinition=family)["tasks"][0]["taskArn"]
    ecs.get_waiter("tasks_stopped").wait(tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    return arn, ecs.describe_tasks(tasks=[arn])["tasks"][0]


def test_a_task_reads_its_secrets_with_its_execution_role(wharf_up):
    ecs, iam = wharf_up.client(), wharf_up.client("iam")
    sm, ssm = wharf_up.client("secretsmanager"), wharf_up.client("ssm")
    wait_instance(ecs)
    db = sm.create_secret(Name="app/db", SecretString='{"user":"app","password":"pw-7f3a9c"}')["ARN"]
    ssm.put_parameter(Name="/app/greeting", Value="hello-51c2", Type="String")
    ssm.put_parameter(Name="/app/token", Value="token-e8d1", Type="SecureString")
    trust = doc({"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"})
    role = iam.create_role(RoleName="exec", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    iam.put_role_policy(RoleName="exec", PolicyName="read", PolicyDocument=doc(
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": db},
        {"Effect": "Allow", "Action": "ssm:GetParameters",
         "Resource": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/app/*"}))
    container = {
        "name": "app", "image": IMAGE, "memory": 64,
        "command": ["sh", "-c", 'echo "password=$DB_PASSWORD whole=$DB greeting=$GREETING token=$TOKEN"'],
        "secrets": [
            {"name": "DB_PASSWORD", "valueFrom": f"{db}:password::"},
            {"name": "DB", "valueFrom": db.rsplit("-", 1)[0]},
            {"name": "GREETING", "valueFrom": "/app/greeting"},
            {"name": "TOKEN", "valueFrom": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/app/token"}]}
    refused(lambda: ecs.register_task_definition(family="noexec", containerDefinitions=[container]),
            "ClientException", "you must also specify a value for 'executionRoleArn'")
    ecs.register_task_definition(family="secrets", executionRoleArn=role, containerDefinitions=[container])
    arn, task = run_and_wait(ecs, "secrets")
    out = subprocess.run(["docker", "logs", container_ids(arn)["app"]], capture_output=True, text=True).stdout
    assert task["containers"][0].get("exitCode") == 0, (task, out)
    assert out.strip() == ('password=pw-7f3a9c whole={"user":"app","password":"pw-7f3a9c"} '
                           'greeting=hello-51c2 token=token-e8d1'), out
    # The values are in the container's environment only: not in what the
    # API describes, nor in the server's log.
    described = json.dumps([task, ecs.describe_task_definition(taskDefinition="secrets")], default=str)
    server_log = open(wharf_up.log.name, errors="replace").read()
    for value in ("pw-7f3a9c", "hello-51c2", "token-e8d1"):
        assert value not in described and value not in server_log, value

    # What the role may not read stops the task before it starts, in ECS's words.
    iam.create_role(RoleName="narrow", AssumeRolePolicyDocument=trust)
    iam.put_role_policy(RoleName="narrow", PolicyName="read", PolicyDocument=doc(
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": db}))
    ecs.register_task_definition(family="denied", executionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/narrow",
                                 containerDefinitions=[container])
    _, task = run_and_wait(ecs, "denied")
    assert task["stopCode"] == "TaskFailedToStart", task
    reason = task["stoppedReason"]
    assert reason.startswith("ResourceInitializationError: unable to pull secrets or registry auth: "
                             "execution resource retrieval failed: unable to retrieve secrets from ssm"), reason
    assert (f"AccessDeniedException: User: arn:aws:sts::{ACCOUNT}:assumed-role/narrow/" in reason
            and "is not authorized to perform: ssm:GetParameters" in reason), reason
    missing = dict(container, secrets=[{"name": "X", "valueFrom": "/app/missing"}])
    ecs.register_task_definition(family="missing", executionRoleArn=role, containerDefinitions=[missing])
    _, task = run_and_wait(ecs, "missing")
    assert task["stoppedReason"].endswith("invalid parameters: /app/missing"), task["stoppedReason"]
    assert not task["containers"][0].get("runtimeId"), "no container was made"


def test_a_fargate_tasks_logs_go_with_its_execution_role(wharf_up):
    """On FARGATE the execution role delivers awslogs (on EC2 the instance's
    credentials do, as ECS's instance role): its permissions decide."""
    ecs, iam, logs = wharf_up.client(), wharf_up.client("iam"), wharf_up.client("logs")
    wait_instance(ecs)
    logs.create_log_group(logGroupName="/ecs/fg")
    trust = doc({"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"})
    iam.create_role(RoleName="fg-exec", AssumeRolePolicyDocument=trust)
    iam.attach_role_policy(RoleName="fg-exec",
                           PolicyArn="arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy")
    iam.create_role(RoleName="fg-none", AssumeRolePolicyDocument=trust)
    net = {"awsvpcConfiguration": {"subnets": ["subnet-0local"], "assignPublicIp": "DISABLED"}}

    def register(family, role):
        ecs.register_task_definition(
            family=family, requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256", memory="512",
            executionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/{role}",
            containerDefinitions=[{"name": "app", "image": IMAGE, "command": ["sh", "-c", "echo from-fargate"],
                                   "logConfiguration": {"logDriver": "awslogs", "options": {
                                       "awslogs-group": "/ecs/fg", "awslogs-stream-prefix": "fg",
                                       "awslogs-region": REGION}}}])

    register("fg-logs", "fg-exec")
    arn = ecs.run_task(taskDefinition="fg-logs", launchType="FARGATE", networkConfiguration=net)["tasks"][0]["taskArn"]
    ecs.get_waiter("tasks_stopped").wait(tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    task = ecs.describe_tasks(tasks=[arn])["tasks"][0]
    assert task["containers"][0].get("exitCode") == 0, task
    stream = f"fg/app/{arn.rsplit('/', 1)[1]}"
    deadline = time.time() + 20
    got = []
    while time.time() < deadline and not got:
        got = [e["message"] for e in logs.get_log_events(logGroupName="/ecs/fg", logStreamName=stream)["events"]]
        time.sleep(0.3)
    assert got == ["from-fargate"], got

    register("fg-denied", "fg-none")
    arn = ecs.run_task(taskDefinition="fg-denied", launchType="FARGATE", networkConfiguration=net)["tasks"][0]["taskArn"]
    ecs.get_waiter("tasks_stopped").wait(tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    task = ecs.describe_tasks(tasks=[arn])["tasks"][0]
    reason = task["stoppedReason"]
    assert task["stopCode"] == "TaskFailedToStart", task
    assert reason.startswith("ResourceInitializationError: failed to validate logger args"), reason
    assert f"assumed-role/fg-none/" in reason and "logs:CreateLogStream" in reason, reason


def private_registry(tmp_path, user, password):
    """Debian's docker-registry (the reference registry) on a loopback port,
    with htpasswd sign-in; its address and process."""
    port = free_port()
    auth = subprocess.run(["htpasswd", "-Bbn", user, password], capture_output=True, text=True, check=True).stdout
    (tmp_path / "htpasswd").write_text(auth)
    (tmp_path / "registry.yml").write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'blobs'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        f"auth:\n  htpasswd:\n    realm: wharf-test\n    path: {tmp_path / 'htpasswd'}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(tmp_path / "registry.yml")],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "registry.log", "wb"))
    address = f"127.0.0.1:{port}"
    deadline = time.time() + 20
    while True:
        try:
            urllib.request.urlopen(f"http://{address}/v2/", timeout=1)
        except urllib.error.HTTPError as e:
            if e.code == 401:
                return address, proc
        except OSError:
            pass
        assert time.time() < deadline and proc.poll() is None, (tmp_path / "registry.log").read_text()
        time.sleep(0.2)


def test_a_private_registry_is_pulled_with_repository_credentials(wharf_up, tmp_path):
    ecs, iam, sm = wharf_up.client(), wharf_up.client("iam"), wharf_up.client("secretsmanager")
    wait_instance(ecs)
    address, registry = private_registry(tmp_path, "puller", "pull-pw-3b1")
    image = f"{address}/private/busybox:1"
    cfg = str(tmp_path / "docker-config")
    try:
        docker = lambda *a, **kw: subprocess.run(["docker", "--config", cfg, *a], capture_output=True, text=True, **kw)
        assert docker("login", address, "-u", "puller", "--password-stdin", input="pull-pw-3b1").returncode == 0
        docker("tag", IMAGE, image, check=True)
        pushed = docker("push", image)
        assert pushed.returncode == 0, pushed.stderr
        docker("rmi", image, check=True)
        creds = sm.create_secret(Name="registry/puller",
                                 SecretString='{"username":"puller","password":"pull-pw-3b1"}')["ARN"]
        trust = doc({"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                     "Action": "sts:AssumeRole"})
        role = iam.create_role(RoleName="pull", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
        iam.put_role_policy(RoleName="pull", PolicyName="read", PolicyDocument=doc(
            {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": creds}))
        container = {"name": "app", "image": image, "memory": 32, "command": ["echo", "pulled"]}
        # Without credentials the registry refuses the pull, in Docker's words.
        ecs.register_task_definition(family="anonymous", containerDefinitions=[container])
        _, task = run_and_wait(ecs, "anonymous")
        assert task["stoppedReason"].startswith("CannotPullContainerError"), task["stoppedReason"]
        assert "no basic auth credentials" in task["stoppedReason"], task["stoppedReason"]
        # With them (read by the execution role) it pulls and runs.
        ecs.register_task_definition(family="private", executionRoleArn=role, containerDefinitions=[
            dict(container, repositoryCredentials={"credentialsParameter": creds})])
        arn, task = run_and_wait(ecs, "private")
        assert task["containers"][0].get("exitCode") == 0, task
        assert subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0
        out = subprocess.run(["docker", "logs", container_ids(arn)["app"]], capture_output=True, text=True).stdout
        assert out.strip() == "pulled"
    finally:
        registry.kill()
        subprocess.run(["docker", "rmi", "-f", image], capture_output=True)
