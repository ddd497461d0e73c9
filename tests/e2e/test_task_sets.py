"""The EXTERNAL deployment controller: an external tool's blue/green rollout
with task sets, on real containers."""
import time

import pytest
from botocore.exceptions import ClientError

from conftest import wait_for
from test_docker import wait_instance

IMAGE = "wharf-test/busybox:latest"


def running_of(ecs, task_set_id):
    arns = ecs.list_tasks(serviceName="ext", desiredStatus="RUNNING")["taskArns"]
    tasks = ecs.describe_tasks(tasks=arns)["tasks"] if arns else []
    return [t for t in tasks if t["lastStatus"] == "RUNNING" and t.get("startedBy") == task_set_id]


def refused(call, text):
    with pytest.raises(ClientError) as e:
        call()
    err = e.value.response["Error"]
    assert text in err["Message"], err
    return err["Code"]


def test_blue_green_with_task_sets(wharf_up):
    ecs = wharf_up.client()
    wait_instance(ecs)
    for family in ("blue", "green"):
        ecs.register_task_definition(family=family, containerDefinitions=[
            {"name": "app", "image": IMAGE, "memory": 16, "command": ["sleep", "600"], "stopTimeout": 1}])
    external = {"type": "EXTERNAL"}
    assert refused(lambda: ecs.create_service(serviceName="ext", taskDefinition="blue", deploymentController=external),
                   "taskDefinition cannot be specified") == "InvalidParameterException"
    svc = ecs.create_service(serviceName="ext", desiredCount=2, deploymentController=external)["service"]
    assert svc["deploymentController"] == external and svc["taskSets"] == [] and svc["deployments"] == []

    blue = ecs.create_task_set(cluster="default", service="ext", taskDefinition="blue", externalId="blue-1",
                               scale={"value": 100, "unit": "PERCENT"}, clientToken="blue-token")["taskSet"]
    assert blue["status"] == "ACTIVE" and blue["computedDesiredCount"] == 2 and blue["externalId"] == "blue-1"
    assert ":task-set/default/ext/ecs-svc/" in blue["taskSetArn"]
    again = ecs.create_task_set(cluster="default", service="ext", taskDefinition="blue", externalId="blue-1",
                                scale={"value": 100, "unit": "PERCENT"}, clientToken="blue-token")["taskSet"]
    assert again["id"] == blue["id"], "a retry with its clientToken makes no second task set"
    wait_for(lambda: len(running_of(ecs, blue["id"])) == 2, "blue's two tasks")
    ecs.update_service_primary_task_set(cluster="default", service="ext", primaryTaskSet=blue["taskSetArn"])
    described = ecs.describe_services(services=["ext"])["services"][0]
    assert described["taskDefinition"].endswith("blue:1") and described["taskSets"][0]["status"] == "PRIMARY"

    # Green comes up beside blue at half, then full; traffic would move here.
    green = ecs.create_task_set(cluster="default", service="ext", taskDefinition="green",
                                scale={"value": 50, "unit": "PERCENT"})["taskSet"]
    assert green["computedDesiredCount"] == 1
    # Task sets are taggable resources, through their ARN.
    ecs.tag_resource(resourceArn=green["taskSetArn"], tags=[{"key": "color", "value": "green"}])
    assert ecs.list_tags_for_resource(resourceArn=green["taskSetArn"])["tags"] == [{"key": "color", "value": "green"}]
    tagged = ecs.describe_task_sets(cluster="default", service="ext", taskSets=[green["id"]], include=["TAGS"])
    assert tagged["taskSets"][0]["tags"] == [{"key": "color", "value": "green"}]
    ecs.untag_resource(resourceArn=green["taskSetArn"], tagKeys=["color"])
    assert ecs.list_tags_for_resource(resourceArn=green["taskSetArn"])["tags"] == []
    wait_for(lambda: len(running_of(ecs, green["id"])) == 1, "green's first task")
    ecs.update_task_set(cluster="default", service="ext", taskSet=green["id"], scale={"value": 100, "unit": "PERCENT"})
    wait_for(lambda: len(running_of(ecs, green["id"])) == 2, "green at full scale")
    wait_for(lambda: {ts["stabilityStatus"] for ts in ecs.describe_task_sets(
        cluster="default", service="ext")["taskSets"]} == {"STEADY_STATE"}, "both task sets steady")
    assert len(running_of(ecs, blue["id"])) == 2, "blue keeps running until it is deleted"

    assert refused(lambda: ecs.delete_task_set(cluster="default", service="ext", taskSet=blue["id"]),
                   "primary task set") == "InvalidParameterException"
    refused(lambda: ecs.update_service(service="ext", taskDefinition="green"), "EXTERNAL deployment controller")
    ecs.update_service_primary_task_set(cluster="default", service="ext", primaryTaskSet=green["id"])
    deleted = ecs.delete_task_set(cluster="default", service="ext", taskSet=blue["id"])["taskSet"]
    assert deleted["status"] == "DRAINING"
    wait_for(lambda: [ts["id"] for ts in ecs.describe_task_sets(cluster="default", service="ext")["taskSets"]]
             == [green["id"]], "blue to drain away")
    assert running_of(ecs, blue["id"]) == [] and len(running_of(ecs, green["id"])) == 2
    missing = ecs.describe_task_sets(cluster="default", service="ext", taskSets=[blue["id"]])
    assert refused(lambda: ecs.list_tags_for_resource(resourceArn=blue["taskSetArn"]),
                   "could not be found") == "InvalidParameterException"
    assert missing["taskSets"] == [] and missing["failures"][0]["reason"] == "MISSING"
    assert refused(lambda: ecs.update_task_set(cluster="default", service="ext", taskSet=blue["id"],
                                               scale={"value": 10, "unit": "PERCENT"}),
                   "does not exist") == "TaskSetNotFoundException"

    # The service's desired count scales its task sets.
    ecs.update_service(service="ext", desiredCount=3)
    wait_for(lambda: len(running_of(ecs, green["id"])) == 3, "green at three")
    ecs.delete_service(service="ext", force=True)
    wait_for(lambda: running_of(ecs, green["id"]) == [], "the deleted service's tasks to stop")
