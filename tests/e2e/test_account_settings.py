"""Account settings: what can be set, what each does (containerInsights for new
clusters, defaultLogDriverMode for new tasks' containers), and what is refused."""
import json
import subprocess
import time

import pytest
from botocore.exceptions import ClientError

from test_docker import wait_instance

IMAGE = "wharf-test/busybox:latest"
NAMES = ["serviceLongArnFormat", "taskLongArnFormat", "containerInstanceLongArnFormat", "awsvpcTrunking",
         "containerInsights", "fargateFIPSMode", "tagResourceAuthorization", "fargateTaskRetirementWaitPeriod",
         "guardDutyActivate", "defaultLogDriverMode", "fargateEventWindows"]


def refused(call, text):
    with pytest.raises(ClientError) as e:
        call()
    err = e.value.response["Error"]
    assert err["Code"] == "InvalidParameterException" and text in err["Message"], err


def test_account_settings_api(wharf, ecs):
    root = "arn:aws:iam::000000000000:root"
    assert ecs.list_account_settings()["settings"] == []
    effective, token = [], None
    while True:
        page = ecs.list_account_settings(effectiveSettings=True, **({"nextToken": token} if token else {}))
        effective += page["settings"]
        token = page.get("nextToken")
        if not token:
            break
    assert [s["name"] for s in effective] == NAMES
    by_name = {s["name"]: s for s in effective}
    assert by_name["defaultLogDriverMode"]["value"] == "non-blocking"
    assert by_name["containerInsights"]["value"] == "disabled"
    assert by_name["guardDutyActivate"]["type"] == "aws_managed" and by_name["taskLongArnFormat"]["type"] == "user"

    refused(lambda: ecs.put_account_setting(name="taskLongArnFormat", value="disabled"), "long ARN format")
    refused(lambda: ecs.put_account_setting(name="guardDutyActivate", value="on"), "read-only")
    refused(lambda: ecs.put_account_setting(name="containerInsights", value="sometimes"), "Invalid value 'sometimes'")
    refused(lambda: ecs.put_account_setting(name="containerInsights", value="enabled",
                                            principalArn="arn:aws:iam::000000000000:user/alice"), "must be the root")
    refused(lambda: ecs.put_account_setting_default(name="fargateFIPSMode", value="enabled"), "FIPS")
    assert ecs.list_account_settings()["settings"] == [], "nothing refused was stored"

    made = ecs.put_account_setting(name="containerInsights", value="enhanced")["setting"]
    assert made == {"name": "containerInsights", "value": "enhanced", "principalArn": root, "type": "user"}
    ecs.put_account_setting_default(name="fargateTaskRetirementWaitPeriod", value="14")
    listed = ecs.list_account_settings()["settings"]
    assert [(s["name"], s["value"]) for s in listed] == [
        ("containerInsights", "enhanced"), ("fargateTaskRetirementWaitPeriod", "14")]
    assert ecs.list_account_settings(name="containerInsights", value="disabled")["settings"] == []
    assert ecs.list_account_settings(principalArn=root, name="containerInsights")["settings"][0]["value"] == "enhanced"

    # New clusters take the account's Container Insights unless they say.
    ecs.create_cluster(clusterName="watched")
    ecs.create_cluster(clusterName="quiet", settings=[{"name": "containerInsights", "value": "disabled"}])
    settings = {c["clusterName"]: c["settings"] for c in ecs.describe_clusters(
        clusters=["watched", "quiet"], include=["SETTINGS"])["clusters"]}
    assert settings == {"watched": [{"name": "containerInsights", "value": "enhanced"}],
                        "quiet": [{"name": "containerInsights", "value": "disabled"}]}, settings

    gone = ecs.delete_account_setting(name="containerInsights")["setting"]
    assert gone["value"] == "enhanced"
    assert [s["name"] for s in ecs.list_account_settings()["settings"]] == ["fargateTaskRetirementWaitPeriod"]
    # The default is in effect again.
    value = ecs.list_account_settings(name="containerInsights", effectiveSettings=True)["settings"][0]["value"]
    assert value == "disabled"


def log_mode(task_arn):
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.amazonaws.ecs.task-arn={task_arn}"],
                         capture_output=True, text=True).stdout.split()
    assert len(ids) == 1, ids
    out = subprocess.run(["docker", "inspect", ids[0]], capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]["HostConfig"]["LogConfig"]


def test_default_log_driver_mode_reaches_new_tasks_containers(wharf_up):
    ecs = wharf_up.client()
    wait_instance(ecs)
    ecs.register_task_definition(family="logs", containerDefinitions=[
        {"name": "app", "image": IMAGE, "memory": 16, "command": ["sleep", "600"], "stopTimeout": 1,
         "logConfiguration": {"logDriver": "awslogs", "options": {
             "awslogs-group": "/wharf/logs", "awslogs-create-group": "true", "awslogs-stream-prefix": "p"}}}])

    def started():
        arn = ecs.run_task(taskDefinition="logs")["tasks"][0]["taskArn"]
        deadline = time.time() + 30
        while ecs.describe_tasks(tasks=[arn])["tasks"][0]["lastStatus"] != "RUNNING":
            assert time.time() < deadline, "the task did not start"
            time.sleep(0.2)
        return arn

    # ECS's default since June 2025; Docker adds its daemon's own log options.
    default = log_mode(started())
    assert default["Type"] == "json-file" and default["Config"]["mode"] == "non-blocking", default
    ecs.put_account_setting_default(name="defaultLogDriverMode", value="blocking")
    assert log_mode(started())["Config"]["mode"] == "blocking"
    # A container that names its mode keeps it.
    ecs.register_task_definition(family="logs", containerDefinitions=[
        {"name": "app", "image": IMAGE, "memory": 16, "command": ["sleep", "600"], "stopTimeout": 1,
         "logConfiguration": {"logDriver": "json-file", "options": {"mode": "non-blocking", "max-buffer-size": "2m"}}}])
    config = log_mode(started())["Config"]
    assert config["mode"] == "non-blocking" and config["max-buffer-size"] == "2m", config
    with pytest.raises(ClientError) as e:
        ecs.register_task_definition(family="logs", containerDefinitions=[
            {"name": "app", "image": IMAGE, "memory": 16,
             "logConfiguration": {"logDriver": "json-file", "options": {"mode": "sometimes"}}}])
    assert "Invalid log delivery mode 'sometimes'" in e.value.response["Error"]["Message"]
