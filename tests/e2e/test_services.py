"""Services on real Docker: healing, rolling deployments, the circuit breaker."""
import json
import subprocess
import threading
import time

import pytest

from conftest import KEY, REGION, SECRET
from test_docker import wait_instance

IMAGE = "wharf-test/busybox:latest"


def web(ecs, family="web", command=None):
    return ecs.register_task_definition(family=family, containerDefinitions=[{
        "name": "app", "image": IMAGE, "memory": 32, "stopTimeout": 2,
        "command": command or ["httpd", "-f", "-p", "80", "-h", "/etc"],
        "portMappings": [{"containerPort": 80, "hostPort": 0}]}])["taskDefinition"]["taskDefinitionArn"]


def stable(ecs, name, attempts=90):
    """The services-stable waiter, then the rollout's COMPLETED (tasks also healthy)."""
    ecs.get_waiter("services_stable").wait(services=[name], WaiterConfig={"Delay": 1, "MaxAttempts": attempts})
    for _ in range(50):
        s = ecs.describe_services(services=[name])["services"][0]
        if s["deployments"][0]["rolloutState"] == "COMPLETED":
            return s
        time.sleep(0.2)
    raise AssertionError(f"rollout did not complete: {s['deployments']}")


def running_containers(service_group="service:web"):
    out = subprocess.run(["docker", "ps", "--filter", "label=com.amazonaws.ecs.cluster=default",
                          "--format", '{{.ID}} {{.Label "com.amazonaws.ecs.task-arn"}}'],
                         capture_output=True, text=True, check=True).stdout
    return [line.split() for line in out.splitlines()]


def service_tasks(ecs, name, status="RUNNING"):
    arns = ecs.list_tasks(serviceName=name, desiredStatus=status)["taskArns"]
    return ecs.describe_tasks(tasks=arns)["tasks"] if arns else []


class Watcher(threading.Thread):
    """Samples the healthy task count of a service while a deployment runs."""

    def __init__(self, ecs, name):
        super().__init__(daemon=True)
        self.ecs, self.name, self.samples, self.done = ecs, name, [], False

    def run(self):
        while not self.done:
            tasks = service_tasks(self.ecs, self.name)
            self.samples.append(sum(1 for t in tasks if t["lastStatus"] == "RUNNING"))
            time.sleep(0.2)


def test_service_heals_rolls_out_and_rolls_back(wharf_up):
    ecs = wharf_up.client()
    wait_instance(ecs)
    v1 = web(ecs)
    svc = ecs.create_service(
        serviceName="web", taskDefinition="web", desiredCount=3,
        deploymentConfiguration={"minimumHealthyPercent": 100, "maximumPercent": 200,
                                 "deploymentCircuitBreaker": {"enable": True, "rollback": True}},
        placementStrategy=[{"type": "spread", "field": "instanceId"}])["service"]
    assert svc["status"] == "ACTIVE" and svc["desiredCount"] == 3
    assert svc["deployments"][0]["status"] == "PRIMARY"
    s = stable(ecs, "web")
    assert s["runningCount"] == 3 and s["deployments"][0]["rolloutState"] == "COMPLETED"
    tasks = service_tasks(ecs, "web")
    assert len(tasks) == 3
    assert all(t["group"] == "service:web" and t["startedBy"] == s["deployments"][0]["id"] for t in tasks)
    assert len(running_containers()) == 3
    messages = [e["message"] for e in s["events"]]
    assert any("has started 3 tasks" in m for m in messages), messages
    assert messages[0] == "(service web) has reached a steady state."

    # Kill a container: the service replaces the task within seconds.
    victim = tasks[0]
    subprocess.run(["docker", "kill", victim["containers"][0]["runtimeId"]], check=True, capture_output=True)
    t0 = time.time()
    while time.time() - t0 < 20:
        now = [t for t in service_tasks(ecs, "web") if t["lastStatus"] == "RUNNING"]
        if len(now) == 3 and victim["taskArn"] not in {t["taskArn"] for t in now}:
            break
        time.sleep(0.2)
    replaced_in = time.time() - t0
    assert replaced_in < 20, "no replacement"
    print(f"replacement RUNNING {replaced_in:.2f}s after docker kill")
    stopped = ecs.describe_tasks(tasks=[victim["taskArn"]])["tasks"][0]
    assert stopped["stopCode"] == "EssentialContainerExited"

    # Rolling update to revision 2 never drops below 3 running (min 100%).
    stable(ecs, "web")
    v2 = web(ecs)
    watcher = Watcher(ecs, "web")
    watcher.start()
    ecs.update_service(service="web", taskDefinition=v2)
    s = stable(ecs, "web")
    watcher.done = True
    watcher.join()
    assert s["taskDefinition"] == v2 and len(s["deployments"]) == 1
    assert min(watcher.samples) >= 3, watcher.samples
    assert max(watcher.samples) <= 6, watcher.samples
    assert {t["taskDefinitionArn"] for t in service_tasks(ecs, "web")} == {v2}

    # A broken revision trips the circuit breaker and rolls back to revision 2.
    broken = web(ecs, command=["sh", "-c", "exit 1"])
    ecs.update_service(service="web", taskDefinition=broken)
    deadline = time.time() + 90
    while time.time() < deadline:
        s = ecs.describe_services(services=["web"])["services"][0]
        if s["taskDefinition"] == v2 and len(s["deployments"]) == 1 and s["runningCount"] == 3:
            break
        time.sleep(0.5)
    assert s["taskDefinition"] == v2, [e["message"] for e in s["events"][:10]]
    messages = [e["message"] for e in s["events"]]
    assert any("deployment failed: tasks failed to start." in m for m in messages), messages[:10]
    assert any("rolling back to deployment" in m for m in messages), messages[:10]
    failed = [d for d in s["deployments"] if d["taskDefinition"] == broken]
    assert failed == [] , "the failed deployment drained away"
    assert len([t for t in service_tasks(ecs, "web") if t["lastStatus"] == "RUNNING"]) == 3

    # Delete: refused while scaled up, then drains to INACTIVE.
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.delete_service(service="web")
    assert ecs.delete_service(service="web", force=True)["service"]["status"] == "DRAINING"
    ecs.get_waiter("services_inactive").wait(services=["web"], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    assert ecs.list_services()["serviceArns"] == []
    assert running_containers() == []


def test_services_stable_waiter_with_the_aws_cli(wharf_up, tmp_path):
    ecs = wharf_up.client()
    wait_instance(ecs)
    web(ecs, family="cli")
    env = {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": REGION,
           "PATH": "/usr/local/bin:/usr/bin:/bin:" + __import__("os").environ.get("PATH", "")}

    def aws(*args):
        out = subprocess.run(["aws", "--endpoint-url", wharf_up.url, "ecs", *args], env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else None

    created = aws("create-service", "--service-name", "cli", "--task-definition", "cli", "--desired-count", "2",
                  "--deployment-configuration",
                  "minimumHealthyPercent=50,maximumPercent=100,deploymentCircuitBreaker={enable=true,rollback=true}")
    assert created["service"]["deploymentConfiguration"]["minimumHealthyPercent"] == 50
    aws("wait", "services-stable", "--services", "cli")
    s = aws("describe-services", "--services", "cli", "missing")
    assert s["services"][0]["runningCount"] == 2
    assert s["failures"][0]["reason"] == "MISSING"
    # Scale down, then delete with the CLI.
    aws("update-service", "--service", "cli", "--desired-count", "0")
    aws("wait", "services-stable", "--services", "cli")
    assert aws("delete-service", "--service", "cli")["service"]["status"] == "DRAINING"
    aws("wait", "services-inactive", "--services", "cli")
