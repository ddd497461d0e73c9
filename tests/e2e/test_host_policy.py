"""The host policy on `wharf up` (ECS_DISABLE_PRIVILEGED, WHARF_HOST_VOLUME_ALLOWLIST): a refused
task stops with TaskFailedToStart and the reason, and nothing of it reaches Docker; an allowed task runs."""
import subprocess
import time

import pytest

from conftest import run_up
from test_docker import docker_ps, wait_instance

IMAGE = "wharf-test/busybox:latest"
WAIT = {"Delay": 1, "MaxAttempts": 60}


@pytest.fixture
def strict_up(tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    yield from run_up(tmp_path, env={
        "ECS_DISABLE_PRIVILEGED": "true",
        "WHARF_HOST_VOLUME_ALLOWLIST": f"{allowed}/,/nonexistent-wharf-dir",
    })


def docker_volumes(prefix):
    out = subprocess.run(["docker", "volume", "ls", "-q", "--filter", f"name={prefix}"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def register(ecs, family, volumes, **container):
    ecs.register_task_definition(family=family, volumes=volumes, containerDefinitions=[
        {"name": "app", "image": IMAGE, "memory": 16, "stopTimeout": 1, **container}])


def test_refused_tasks_fail_to_start_and_create_nothing(strict_up, tmp_path):
    ecs = strict_up.client()
    wait_instance(ecs)
    register(ecs, "privileged", [{"name": "scratch"}], privileged=True, command=["sleep", "600"],
             mountPoints=[{"sourceVolume": "scratch", "containerPath": "/scratch"}])
    # A sibling whose name starts like the allowed directory is not beneath it.
    evil = tmp_path / "allowed-evil"
    evil.mkdir()
    register(ecs, "outside", [{"name": "evil", "host": {"sourcePath": str(evil)}}], command=["sleep", "600"],
             mountPoints=[{"sourceVolume": "evil", "containerPath": "/evil"}])
    register(ecs, "inside", [{"name": "data", "host": {"sourcePath": str(tmp_path / "allowed" / "data")}}],
             command=["sh", "-c", "echo from-the-task > /data/out; exec sleep 600"],
             mountPoints=[{"sourceVolume": "data", "containerPath": "/data"}])

    refused = {f: ecs.run_task(taskDefinition=f)["tasks"][0]["taskArn"] for f in ("privileged", "outside")}
    inside = ecs.run_task(taskDefinition="inside")["tasks"][0]["taskArn"]
    ecs.get_waiter("tasks_stopped").wait(tasks=list(refused.values()), WaiterConfig=WAIT)
    tasks = {t["taskDefinitionArn"].rsplit("/", 1)[1].split(":")[0]: t
             for t in ecs.describe_tasks(tasks=list(refused.values()))["tasks"]}
    assert tasks["privileged"]["stopCode"] == "TaskFailedToStart"
    assert tasks["privileged"]["stoppedReason"] == (
        "CannotCreateContainerError: container app is privileged, and this host refuses privileged "
        "containers (ECS_DISABLE_PRIVILEGED)")
    assert tasks["outside"]["stopCode"] == "TaskFailedToStart"
    assert tasks["outside"]["stoppedReason"] == (
        f"CannotCreateContainerError: volume evil: host path {evil} is outside the directories this host "
        "allows (WHARF_HOST_VOLUME_ALLOWLIST)")
    for arn in refused.values():
        assert docker_ps(arn) == [], arn
    assert docker_volumes("ecs-privileged-") == []

    ecs.get_waiter("tasks_running").wait(tasks=[inside], WaiterConfig=WAIT)
    assert [state for _, state in docker_ps(inside)] == ["running"]
    out = tmp_path / "allowed" / "data" / "out"
    deadline = time.time() + 10
    while time.time() < deadline and not out.exists():
        time.sleep(0.1)
    assert out.read_text() == "from-the-task\n"
    ecs.stop_task(task=inside)
    ecs.get_waiter("tasks_stopped").wait(tasks=[inside], WaiterConfig=WAIT)
