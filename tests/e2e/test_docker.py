"""`wharf up` runs tasks as real Docker containers."""
import json
import subprocess
import time
import urllib.request

import pytest


def docker_ps(task_arn):
    out = subprocess.run(["docker", "ps", "-a", "--filter", f"label=com.amazonaws.ecs.task-arn={task_arn}",
                          "--format", "{{.ID}} {{.State}}"], capture_output=True, text=True, check=True).stdout
    return [line.split() for line in out.splitlines()]


def wait_instance(ecs):
    for _ in range(100):
        try:
            arns = ecs.list_container_instances()["containerInstanceArns"]
        except ecs.exceptions.ClusterNotFoundException:  # the agent creates `default` as it joins
            arns = []
        if arns and ecs.describe_container_instances(containerInstances=arns)["containerInstances"][0]["agentConnected"]:
            return arns[0]
        time.sleep(0.1)
    raise AssertionError("agent did not connect")


def test_run_task_on_docker_and_stop(wharf_up):
    ecs = wharf_up.client()
    inst = wait_instance(ecs)
    ci = ecs.describe_container_instances(containerInstances=[inst])["containerInstances"][0]
    attrs = {a["name"]: a.get("value") for a in ci["attributes"]}
    assert attrs["ecs.os-type"] == "linux"
    cpu = {r["name"]: r for r in ci["registeredResources"]}["CPU"]["integerValue"]
    assert cpu % 1024 == 0 and cpu >= 1024
    ecs.register_task_definition(family="web", containerDefinitions=[{
        "name": "app", "image": "wharf-test/busybox:latest", "memory": 32, "stopTimeout": 2,
        "command": ["httpd", "-f", "-p", "80", "-h", "/etc"],
        "environment": [{"name": "GREETING", "value": "hi"}],
        "portMappings": [{"containerPort": 80, "hostPort": 0}]}])
    task = ecs.run_task(taskDefinition="web")["tasks"][0]
    arn = task["taskArn"]
    ecs.get_waiter("tasks_running").wait(tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    t = ecs.describe_tasks(tasks=[arn])["tasks"][0]
    binding = t["containers"][0]["networkBindings"][0]
    assert binding["containerPort"] == 80 and binding["hostPort"] > 0
    # the container really serves on the bound port
    body = urllib.request.urlopen(f"http://127.0.0.1:{binding['hostPort']}/passwd", timeout=5).read()
    assert b"root" in body
    rows = docker_ps(arn)
    assert len(rows) == 1 and rows[0][1] == "running"
    assert t["containers"][0]["runtimeId"].startswith(rows[0][0])
    ecs.stop_task(task=arn, reason="done")
    ecs.get_waiter("tasks_stopped").wait(tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    t = ecs.describe_tasks(tasks=[arn])["tasks"][0]
    assert (t["stopCode"], t["stoppedReason"]) == ("UserInitiated", "done")
    assert t["containers"][0]["exitCode"] is not None
    assert docker_ps(arn)[0][1] == "exited"


def test_essential_exit_and_pull_failure(wharf_up):
    ecs = wharf_up.client()
    wait_instance(ecs)
    ecs.register_task_definition(family="job", containerDefinitions=[{
        "name": "main", "image": "wharf-test/busybox:latest", "memory": 16, "command": ["sh", "-c", "exit 3"]}])
    arn = ecs.run_task(taskDefinition="job")["tasks"][0]["taskArn"]
    ecs.get_waiter("tasks_stopped").wait(tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    t = ecs.describe_tasks(tasks=[arn])["tasks"][0]
    assert t["stopCode"] == "EssentialContainerExited"
    assert t["stoppedReason"] == "Essential container in task exited"
    assert t["containers"][0]["exitCode"] == 3

    ecs.register_task_definition(family="ghost", containerDefinitions=[{
        "name": "main", "image": "wharf-test/does-not-exist:1", "memory": 16}])
    arn = ecs.run_task(taskDefinition="ghost")["tasks"][0]["taskArn"]
    ecs.get_waiter("tasks_stopped").wait(tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    t = ecs.describe_tasks(tasks=[arn])["tasks"][0]
    assert t["stopCode"] == "TaskFailedToStart"
    assert t["stoppedReason"].startswith("CannotPullContainerError")


def test_restart_readopts_without_duplicates(wharf_up):
    ecs = wharf_up.client()
    wait_instance(ecs)
    ecs.register_task_definition(family="long", containerDefinitions=[{
        "name": "main", "image": "wharf-test/busybox:latest", "memory": 16, "command": ["sleep", "600"], "stopTimeout": 2}])
    arn = ecs.run_task(taskDefinition="long")["tasks"][0]["taskArn"]
    ecs.get_waiter("tasks_running").wait(tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    before = docker_ps(arn)
    wharf_up.kill()
    wharf_up.start()
    ecs = wharf_up.client()
    assert len(ecs.list_container_instances()["containerInstanceArns"]) == 1
    wait_instance(ecs)
    time.sleep(2)
    assert docker_ps(arn) == before
    assert ecs.describe_tasks(tasks=[arn])["tasks"][0]["lastStatus"] == "RUNNING"
    ecs.stop_task(task=arn)
    ecs.get_waiter("tasks_stopped").wait(tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 60})


def test_health_checks_are_reported(wharf_up):
    ecs = wharf_up.client()
    wait_instance(ecs)
    arns = {}
    for name, cmd in [("good", "true"), ("bad", "exit 1")]:
        ecs.register_task_definition(family=name, containerDefinitions=[{
            "name": "main", "image": "wharf-test/busybox:latest", "memory": 16, "stopTimeout": 2,
            "command": ["sleep", "600"],
            "healthCheck": {"command": ["CMD-SHELL", cmd], "interval": 5, "timeout": 2, "retries": 1}}])
        arns[name] = ecs.run_task(taskDefinition=name)["tasks"][0]["taskArn"]
    deadline = time.time() + 30
    health = {}
    while time.time() < deadline:
        tasks = ecs.describe_tasks(tasks=list(arns.values()))["tasks"]
        health = {t["taskDefinitionArn"].rsplit("/", 1)[1].split(":")[0]: (t["healthStatus"], t["containers"][0]["healthStatus"])
                  for t in tasks}
        if health == {"good": ("HEALTHY", "HEALTHY"), "bad": ("UNHEALTHY", "UNHEALTHY")}:
            break
        time.sleep(0.5)
    assert health == {"good": ("HEALTHY", "HEALTHY"), "bad": ("UNHEALTHY", "UNHEALTHY")}
    for arn in arns.values():
        ecs.stop_task(task=arn)
