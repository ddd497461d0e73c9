"""Task scale-in protection on real tasks, UpdateClusterSettings, and the
container instance health DescribeContainerInstances includes."""
import time

import pytest
from botocore.exceptions import ClientError

from conftest import wait_for
from test_docker import wait_instance

IMAGE = "wharf-test/busybox:latest"


def running(ecs, service):
    arns = ecs.list_tasks(serviceName=service, desiredStatus="RUNNING")["taskArns"]
    tasks = ecs.describe_tasks(tasks=arns)["tasks"] if arns else []
    return [t for t in tasks if t["lastStatus"] == "RUNNING"]


def test_protected_tasks_outlast_scale_in_until_unprotected(wharf_up):
    ecs = wharf_up.client()
    wait_instance(ecs)
    ecs.register_task_definition(family="worker", containerDefinitions=[
        {"name": "app", "image": IMAGE, "memory": 16, "command": ["sleep", "600"], "stopTimeout": 1}])
    ecs.create_service(serviceName="workers", taskDefinition="worker", desiredCount=3)
    tasks = wait_for(lambda: (lambda ts: ts if len(ts) == 3 else None)(running(ecs, "workers")), "three workers")
    busy = [t["taskArn"] for t in tasks[:2]]

    got = ecs.get_task_protection(cluster="default", tasks=busy)["protectedTasks"]
    assert [p["protectionEnabled"] for p in got] == [False, False]
    before = time.time()
    out = ecs.update_task_protection(cluster="default", tasks=busy, protectionEnabled=True, expiresInMinutes=30)
    assert out["failures"] == [] and all(p["protectionEnabled"] for p in out["protectedTasks"])
    expiry = out["protectedTasks"][0]["expirationDate"].timestamp()
    assert before + 29 * 60 < expiry < time.time() + 31 * 60, expiry

    # Bad requests, and tasks it does not apply to.
    with pytest.raises(ClientError) as e:
        ecs.update_task_protection(cluster="default", tasks=busy, protectionEnabled=True, expiresInMinutes=2881)
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    alone = ecs.run_task(taskDefinition="worker")["tasks"][0]["taskArn"]
    out = ecs.update_task_protection(cluster="default", tasks=[alone, "0123456789abcdef0123456789abcdef"], protectionEnabled=True)
    assert [f["reason"] for f in out["failures"]] == ["TASK_NOT_VALID", "MISSING"], out["failures"]
    ecs.stop_task(task=alone)

    # Scale in to zero: only the unprotected worker goes.
    ecs.update_service(service="workers", desiredCount=0)
    wait_for(lambda: {t["taskArn"] for t in running(ecs, "workers")} == set(busy), "the unprotected task to stop")
    time.sleep(4)
    assert {t["taskArn"] for t in running(ecs, "workers")} == set(busy), "protected tasks are kept"
    wait_for(lambda: ecs.describe_services(services=["workers"])["services"][0]["runningCount"] == 2,
             "the service to count its two protected tasks")

    # Done with its work, a worker drops its protection and is scaled in.
    out = ecs.update_task_protection(cluster="default", tasks=busy[:1], protectionEnabled=False)
    assert out["protectedTasks"][0]["protectionEnabled"] is False
    assert "expirationDate" not in out["protectedTasks"][0]
    wait_for(lambda: [t["taskArn"] for t in running(ecs, "workers")] == busy[1:], "the released task to stop")
    # StopTask still stops a protected task.
    ecs.stop_task(task=busy[1])
    wait_for(lambda: running(ecs, "workers") == [], "the protected task to stop on StopTask")


def test_cluster_settings_and_instance_health(wharf_up):
    ecs = wharf_up.client()
    instance = wait_instance(ecs)
    out = ecs.update_cluster_settings(cluster="default", settings=[{"name": "containerInsights", "value": "enhanced"}])
    assert {"name": "containerInsights", "value": "enhanced"} in out["cluster"]["settings"]
    with pytest.raises(ClientError) as e:
        ecs.update_cluster_settings(cluster="default", settings=[{"name": "containerInsights", "value": "maybe"}])
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    described = ecs.describe_clusters(clusters=["default"], include=["SETTINGS"])["clusters"][0]
    assert described["settings"] == [{"name": "containerInsights", "value": "enhanced"}]

    plain = ecs.describe_container_instances(containerInstances=[instance])["containerInstances"][0]
    assert "healthStatus" not in plain
    health = ecs.describe_container_instances(containerInstances=[instance], include=["CONTAINER_INSTANCE_HEALTH"])[
        "containerInstances"][0]["healthStatus"]
    assert health["overallStatus"] == "OK"
    assert health["details"][0]["type"] == "CONTAINER_RUNTIME" and health["details"][0]["status"] == "OK"
