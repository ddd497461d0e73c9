"""Task roles on real Docker: a task's containers find its role's credentials
at 169.254.170.2 (bridge, host and awsvpc alike), boto3 inside the task uses
them unchanged as the assumed role, they allow what the role allows, and they
stop working when the task stops."""
import io
import json
import os
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request

import boto3
import botocore
import botocore.exceptions
import pytest

from conftest import REGION, wait_for
from test_agent_features import container_ids
from test_docker import wait_instance

ACCOUNT = "000000000000"
IMAGE = "wharf-test/busybox:latest"
PYTHON_IMAGE = "wharf-test/host-python:1"
ENDPOINT = "http://169.254.170.2"


def doc(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


TRUST_ECS_TASKS = doc({"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                       "Action": "sts:AssumeRole"})


def host_python_image():
    """An image of symlinks and a few files in /etc: with the host's /usr
    (and the Python that runs these tests, and its boto3) mounted in, a
    task runs that Python. No registry is needed."""
    if subprocess.run(["docker", "image", "inspect", PYTHON_IMAGE], capture_output=True).returncode == 0:
        return
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(name, kind, mode=0o755, data=b"", link=""):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.linkname, info.size = kind, mode, link, len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
        for d in ("usr", "etc", "root", "proc", "sys", "dev"):
            add(d, tarfile.DIRTYPE)
        add("tmp", tarfile.DIRTYPE, 0o1777)
        for link in ("bin", "lib", "lib64", "sbin"):
            add(link, tarfile.SYMTYPE, link=f"usr/{link}")
        add("etc/passwd", tarfile.REGTYPE, 0o644, b"root:x:0:0:root:/root:/bin/sh\n")
        add("etc/group", tarfile.REGTYPE, 0o644, b"root:x:0:\n")
        add("etc/nsswitch.conf", tarfile.REGTYPE, 0o644, b"hosts: files dns\n")
        with open("/etc/ld.so.cache", "rb") as f:
            add("etc/ld.so.cache", tarfile.REGTYPE, 0o644, f.read())
    subprocess.run(["docker", "import", "--change", 'CMD ["/bin/sh"]', "-", PYTHON_IMAGE],
                   input=buf.getvalue(), check=True, capture_output=True)


def python_in_a_task():
    """Volumes and mount points that bring the host's Python and boto3 into
    a task of `PYTHON_IMAGE`, the interpreter's path, and its PYTHONPATH."""
    packages = os.path.dirname(os.path.dirname(botocore.__file__))
    boto3_packages = os.path.dirname(os.path.dirname(boto3.__file__))
    paths = []
    for p in sorted({"/usr", os.path.realpath(sys.base_prefix), os.path.realpath(packages),
                     os.path.realpath(boto3_packages)}):
        if not any(p == q or p.startswith(q + "/") for q in paths):
            paths.append(p)
    volumes = [{"name": f"v{i}", "host": {"sourcePath": p}} for i, p in enumerate(paths)]
    mounts = [{"sourceVolume": f"v{i}", "containerPath": p, "readOnly": True} for i, p in enumerate(paths)]
    return volumes, mounts, os.path.realpath(sys.executable), f"{packages}:{boto3_packages}"


# What runs inside the task: boto3's default credential chain, nothing given.
WHOAMI = """
import json, os, boto3, botocore.exceptions
url, region = os.environ["WHARF_URL"], os.environ["WHARF_REGION"]
out = {"uri": os.environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "")}
session = boto3.session.Session(region_name=region)
creds = session.get_credentials().get_frozen_credentials()
out["method"] = session.get_credentials().method
out["creds"] = [creds.access_key, creds.secret_key, creds.token]
out["arn"] = session.client("sts", endpoint_url=url).get_caller_identity()["Arn"]
ecs = session.client("ecs", endpoint_url=url)
for name, call in (("list_clusters", ecs.list_clusters), ("list_task_definitions", ecs.list_task_definitions)):
    try:
        call()
        out[name] = "allowed"
    except botocore.exceptions.ClientError as e:
        out[name] = e.response["Error"]["Code"]
print(json.dumps(out), flush=True)
"""


def logs_of(cid):
    return subprocess.run(["docker", "logs", cid], capture_output=True, text=True).stdout


def test_boto3_in_a_task_is_its_role_until_the_task_stops(wharf_up):
    ecs, iam = wharf_up.client(), wharf_up.client("iam")
    wait_instance(ecs)
    host_python_image()
    iam.create_role(RoleName="app", AssumeRolePolicyDocument=TRUST_ECS_TASKS)
    iam.put_role_policy(RoleName="app", PolicyName="list", PolicyDocument=doc(
        {"Effect": "Allow", "Action": "ecs:ListClusters", "Resource": "*"}))
    role = f"arn:aws:iam::{ACCOUNT}:role/app"
    volumes, mounts, python, path = python_in_a_task()
    ecs.register_task_definition(
        family="whoami", networkMode="host", taskRoleArn=role, volumes=volumes,
        containerDefinitions=[{
            # The aws CLI too finds the task's credentials by itself.
            "name": "cli", "image": PYTHON_IMAGE, "memory": 256, "mountPoints": mounts, "essential": False,
            "command": [python, "-m", "awscli", "--endpoint-url", wharf_up.url, "--region", REGION,
                        "sts", "get-caller-identity", "--output", "json"],
            "environment": [{"name": "PYTHONPATH", "value": path}],
        }, {
            "name": "app", "image": PYTHON_IMAGE, "memory": 256, "mountPoints": mounts,
            "dependsOn": [{"containerName": "cli", "condition": "COMPLETE"}],
            "command": [python, "-c", WHOAMI],
            "environment": [{"name": "WHARF_URL", "value": wharf_up.url}, {"name": "WHARF_REGION", "value": REGION},
                            {"name": "PYTHONPATH", "value": path}]}])
    arn = ecs.run_task(taskDefinition="whoami")["tasks"][0]["taskArn"]
    task_id = arn.rsplit("/", 1)[1]
    ecs.get_waiter("tasks_stopped").wait(tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 90})
    task = ecs.describe_tasks(tasks=[arn])["tasks"][0]
    ids = container_ids(arn)
    out = logs_of(ids["app"])
    exits = {c["name"]: c.get("exitCode") for c in task["containers"]}
    assert exits == {"cli": 0, "app": 0}, (task, out, logs_of(ids["cli"]))
    assert json.loads(logs_of(ids["cli"]))["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/app/{task_id}"
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["method"] == "container-role", seen
    assert seen["uri"].startswith("/v2/credentials/") and len(seen["uri"]) > len("/v2/credentials/") + 30
    assert seen["arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/app/{task_id}"
    assert seen["list_clusters"] == "allowed"
    assert seen["list_task_definitions"] == "AccessDeniedException", "the role allows only ListClusters"
    # Neither the credentials nor where to find them show in the API.
    described = json.dumps(task, default=str)
    assert seen["uri"].rsplit("/", 1)[1] not in described and seen["creds"][0] not in described
    # The task stopped: its credentials are refused.
    key, secret, token = seen["creds"]
    after = boto3.client("ecs", endpoint_url=wharf_up.url, region_name=REGION, aws_access_key_id=key,
                         aws_secret_access_key=secret, aws_session_token=token)

    def refused():
        try:
            after.list_clusters()
            return False
        except botocore.exceptions.ClientError as e:
            return e.response["Error"]["Code"] == "UnrecognizedClientException"
    wait_for(refused, "the stopped task's credentials to be revoked", timeout=5)
    wait_for(lambda: gone(seen["uri"]), "a stopped task's credentials to leave the endpoint", timeout=30)


def test_a_role_ecs_tasks_cannot_assume_is_refused_at_run_task(wharf_up):
    ecs, iam = wharf_up.client(), wharf_up.client("iam")
    iam.create_role(RoleName="ec2only", AssumeRolePolicyDocument=doc(
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}))
    for family, name in (("untrusted", "ec2only"), ("missing", "nobody")):
        ecs.register_task_definition(family=family, taskRoleArn=f"arn:aws:iam::{ACCOUNT}:role/{name}",
                                     containerDefinitions=[{"name": "a", "image": IMAGE, "memory": 16}])
        with pytest.raises(ecs.exceptions.ClientException) as e:
            ecs.run_task(taskDefinition=family)
        assert f"ECS was unable to assume the role 'arn:aws:iam::{ACCOUNT}:role/{name}'" in str(e.value)
    assert ecs.list_tasks()["taskArns"] == [], "nothing was started"


def gone(uri):
    """Whether the endpoint answers `uri` with ECS's InvalidIdInRequest."""
    try:
        urllib.request.urlopen(ENDPOINT + uri, timeout=5)
        return False
    except urllib.error.HTTPError as e:
        return e.code == 400 and json.loads(e.read())["code"] == "InvalidIdInRequest"


def endpoint_answer(cid, uri):
    """What the task's container gets from the credentials endpoint."""
    r = subprocess.run(["docker", "exec", cid, "wget", "-q", "-O", "-", ENDPOINT + uri],
                       capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def test_every_network_mode_reaches_its_own_credentials(wharf_up):
    ecs, iam = wharf_up.client(), wharf_up.client("iam")
    wait_instance(ecs)
    iam.create_role(RoleName="probe", AssumeRolePolicyDocument=TRUST_ECS_TASKS)
    role = f"arn:aws:iam::{ACCOUNT}:role/probe"
    sleeper = [{"name": "c", "image": IMAGE, "memory": 32, "stopTimeout": 1, "command": ["sleep", "600"]}]
    ecs.register_task_definition(family="bridge", networkMode="bridge", taskRoleArn=role,
                                 containerDefinitions=sleeper)
    ecs.register_task_definition(family="vpc", networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
                                 cpu="256", memory="512", taskRoleArn=role, containerDefinitions=sleeper)
    net = {"awsvpcConfiguration": {"subnets": ["subnet-0local"]}}
    arns = [ecs.run_task(taskDefinition="bridge")["tasks"][0]["taskArn"],
            ecs.run_task(taskDefinition="vpc", launchType="FARGATE", networkConfiguration=net)["tasks"][0]["taskArn"]]
    ecs.get_waiter("tasks_running").wait(tasks=arns, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    uris = []
    for arn in arns:
        cid = container_ids(arn)["c"]
        env = subprocess.run(["docker", "exec", cid, "sh", "-c", "echo $AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"],
                             capture_output=True, text=True, check=True).stdout.strip()
        code, body, err = endpoint_answer(cid, env)
        assert code == 0, err
        got = json.loads(body)
        assert got["RoleArn"] == role and got["AccessKeyId"].startswith("ASIA") and got["Token"], got
        assert got["Expiration"].endswith("Z")
        # They are the assumed role's, as the task itself.
        sts = boto3.client("sts", endpoint_url=wharf_up.url, region_name=REGION, aws_access_key_id=got["AccessKeyId"],
                           aws_secret_access_key=got["SecretAccessKey"], aws_session_token=got["Token"])
        assert sts.get_caller_identity()["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/probe/{arn.rsplit('/', 1)[1]}"
        # An ID not the task's own is answered with nothing.
        code, body, err = endpoint_answer(cid, "/v2/credentials/0123456789abcdef0123456789abcdef")
        assert code != 0 and "400" in err, (code, body, err)
        uris.append(env)
    assert uris[0] != uris[1], "each task has an ID of its own"
    # A restarted Wharf serves the running tasks' credentials again, under
    # the IDs their containers already have.
    wharf_up.proc.kill()
    wharf_up.proc.wait()
    wharf_up.start()
    for arn, uri in zip(arns, uris):
        cid = container_ids(arn)["c"]
        wait_for(lambda: endpoint_answer(cid, uri)[0] == 0, "the re-adopted task's credentials", timeout=60)
    for arn in arns:
        ecs.stop_task(task=arn)
    ecs.get_waiter("tasks_stopped").wait(tasks=arns, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    for uri in uris:
        wait_for(lambda: gone(uri), "a stopped task's credentials to leave the endpoint", timeout=30)


def test_an_agent_gets_a_task_s_credentials_only_while_it_runs(wharf):
    """The agent protocol underneath, without Docker: sessions are listed in
    the task, the oldest revoked beyond eight, all of them at STOPPED."""
    from test_ecs_api import ProtocolAgent, register_instance
    ecs, iam = wharf.client(), wharf.client("iam")
    ecs.create_cluster(clusterName="default")
    iam.create_role(RoleName="app", AssumeRolePolicyDocument=TRUST_ECS_TASKS)
    iam.put_role_policy(RoleName="app", PolicyName="list", PolicyDocument=doc(
        {"Effect": "Allow", "Action": "ecs:ListClusters", "Resource": "*"}))
    creds = wharf.agent_credentials()
    agent = ProtocolAgent(wharf, "default", register_instance(wharf.client_with(creds))["containerInstanceArn"], creds)
    agent.poll_once()
    ecs.register_task_definition(family="app", taskRoleArn=f"arn:aws:iam::{ACCOUNT}:role/app",
                                 containerDefinitions=[{"name": "a", "image": IMAGE, "memory": 16}])
    task = ecs.run_task(taskDefinition="app")["tasks"][0]

    def fetch():
        return wharf.agent_call("GetTaskCredentials", {"taskArn": task["taskArn"]}, creds)

    def works(got):
        c = boto3.client("ecs", endpoint_url=wharf.url, region_name=REGION, aws_access_key_id=got["accessKeyId"],
                         aws_secret_access_key=got["secretAccessKey"], aws_session_token=got["sessionToken"])
        try:
            c.list_clusters()
            return True
        except botocore.exceptions.ClientError as e:
            assert e.response["Error"]["Code"] == "UnrecognizedClientException", e.response
            return False

    issued = [fetch() for _ in range(9)]
    assert len({i["credentialsId"] for i in issued}) == 1, "one ID per task"
    assert len({i["accessKeyId"] for i in issued}) == 9
    assert all(i["roleArn"] == f"arn:aws:iam::{ACCOUNT}:role/app" for i in issued)
    assert all(i["expiration"] - i["issued"] == 3_600_000 for i in issued)
    assert not works(issued[0]), "the ninth session revoked the oldest"
    assert all(works(i) for i in issued[1:])
    # STOPPED revokes every one of them, and no more are given.
    ecs.stop_task(task=task["taskArn"])
    agent.report(agent.poll_once()[0], "STOPPED", exit_code=0)
    wait_for(lambda: not any(works(i) for i in issued[1:]), "the stopped task's sessions to be revoked", timeout=5)
    with pytest.raises(urllib.error.HTTPError) as e:
        fetch()
    assert "The task has stopped" in json.loads(e.value.read())["message"]


def test_an_endpoint_moved_elsewhere_is_named_in_full(tmp_path):
    """`--task-credentials-endpoint` elsewhere than 169.254.170.2:80: tasks
    are given the whole URI, as the SDKs' container provider reads it."""
    from conftest import Wharf, remove_test_containers
    w = Wharf(tmp_path / "data", mode="up", args=["--task-credentials-endpoint", "169.254.170.2:8080"])
    w.start()
    try:
        ecs, iam = w.client(), w.client("iam")
        wait_instance(ecs)
        iam.create_role(RoleName="moved", AssumeRolePolicyDocument=TRUST_ECS_TASKS)
        ecs.register_task_definition(family="moved", taskRoleArn=f"arn:aws:iam::{ACCOUNT}:role/moved",
                                     containerDefinitions=[{"name": "c", "image": IMAGE, "memory": 32,
                                                            "stopTimeout": 1, "command": ["sleep", "600"]}])
        arn = ecs.run_task(taskDefinition="moved")["tasks"][0]["taskArn"]
        ecs.get_waiter("tasks_running").wait(tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        cid = container_ids(arn)["c"]
        env = subprocess.run(["docker", "exec", cid, "sh", "-c",
                              "echo \"$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI|$AWS_CONTAINER_CREDENTIALS_FULL_URI\""],
                             capture_output=True, text=True, check=True).stdout.strip()
        relative, full = env.split("|")
        assert relative == "" and full.startswith("http://169.254.170.2:8080/v2/credentials/"), env
        got = subprocess.run(["docker", "exec", cid, "wget", "-q", "-O", "-", full],
                             capture_output=True, text=True)
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["RoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/moved"
    finally:
        w.kill()
        remove_test_containers()
