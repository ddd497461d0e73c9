"""clientToken: a retried RunTask starts nothing new, across a kill -9 of the
server; the same token with another request is a ConflictException."""
import subprocess
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import Wharf, remove_test_containers
from test_docker import wait_instance

IMAGE = "wharf-test/busybox:latest"


def containers_of(arns):
    out = subprocess.run(["docker", "ps", "-aq", "--filter", "label=com.amazonaws.ecs.cluster=default"],
                         capture_output=True, text=True, check=True).stdout.split()
    labels = [subprocess.run(["docker", "inspect", "-f", '{{index .Config.Labels "com.amazonaws.ecs.task-arn"}}', c],
                             capture_output=True, text=True).stdout.strip() for c in out]
    return [a for a in labels if a in arns]


def test_a_retried_run_task_starts_nothing_new(tmp_path):
    w = Wharf(tmp_path / "data", mode="up")
    w.start()
    try:
        ecs = w.client()
        wait_instance(ecs)
        ecs.register_task_definition(family="once", containerDefinitions=[
            {"name": "app", "image": IMAGE, "memory": 16, "command": ["sleep", "600"], "stopTimeout": 1}])
        token = str(uuid.uuid4())
        first = ecs.run_task(taskDefinition="once", count=2, clientToken=token)
        arns = sorted(t["taskArn"] for t in first["tasks"])
        assert len(arns) == 2
        again = ecs.run_task(taskDefinition="once", count=2, clientToken=token)
        assert sorted(t["taskArn"] for t in again["tasks"]) == arns
        assert again["failures"] == first["failures"] == []

        # The same token with another request.
        with pytest.raises(ClientError) as e:
            ecs.run_task(taskDefinition="once", count=1, clientToken=token)
        assert e.value.response["Error"]["Code"] == "ConflictException"
        assert all(a in e.value.response["Error"]["Message"] for a in arns)
        with pytest.raises(ClientError) as e:
            ecs.run_task(taskDefinition="once", clientToken="x" * 65)
        assert e.value.response["Error"]["Code"] == "InvalidParameterException"

        # boto3 fills in a token of its own: two calls without one are two requests.
        other = ecs.run_task(taskDefinition="once")["tasks"][0]["taskArn"]
        assert other not in arns

        ecs.get_waiter("tasks_running").wait(tasks=arns, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        # The token survives kill -9 of the server.
        w.kill()
        w = Wharf(tmp_path / "data", mode="up")
        w.start()
        ecs = w.client()
        after = ecs.run_task(taskDefinition="once", count=2, clientToken=token)
        assert sorted(t["taskArn"] for t in after["tasks"]) == arns
        assert {t["lastStatus"] for t in after["tasks"]} == {"RUNNING"}
        listed = ecs.list_tasks(family="once")["taskArns"]
        assert sorted(listed) == sorted(arns + [other])
        assert sorted(containers_of(arns)) == arns, "one container per task, none started twice"

        # CreateService: the retry gets the service; another request with the token conflicts.
        made = ecs.create_service(serviceName="svc", taskDefinition="once", desiredCount=0, clientToken=token)
        again = ecs.create_service(serviceName="svc", taskDefinition="once", desiredCount=0, clientToken=token)
        assert again["service"]["serviceArn"] == made["service"]["serviceArn"]
        with pytest.raises(ClientError) as e:
            ecs.create_service(serviceName="svc", taskDefinition="once", desiredCount=1, clientToken=token)
        assert e.value.response["Error"]["Code"] == "ConflictException"
        with pytest.raises(ClientError) as e:
            ecs.create_service(serviceName="svc", taskDefinition="once", desiredCount=0)
        assert e.value.response["Error"]["Message"] == "Creation of service was not idempotent."
    finally:
        w.kill()
        remove_test_containers()
