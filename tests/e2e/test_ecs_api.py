"""The ECS API through boto3 and the aws CLI against the real binary."""
import json
import os
import subprocess
import threading
import time

import botocore.exceptions
import pytest

from conftest import KEY, SECRET, REGION

WEB = {
    "family": "web",
    "containerDefinitions": [{
        "name": "app", "image": "wharf-test/busybox:latest", "memory": 32,
        "command": ["httpd", "-f", "-p", "80"],
        "portMappings": [{"containerPort": 80, "hostPort": 8080}],
    }],
}


def code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def register_instance(ecs, cluster="default", cpu=2048, mem=4096):
    return ecs.register_container_instance(cluster=cluster, totalResources=[
        {"name": "CPU", "type": "INTEGER", "integerValue": cpu},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": mem},
        {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22"]},
    ], attributes=[{"name": "ecs.os-type", "value": "linux"}])["containerInstance"]


def test_clusters_lifecycle(ecs):
    arn = ecs.create_cluster(clusterName="prod", tags=[{"key": "team", "value": "a"}])["cluster"]["clusterArn"]
    assert arn == "arn:aws:ecs:eu-west-1:000000000000:cluster/prod"
    assert ecs.create_cluster(clusterName="prod")["cluster"]["clusterArn"] == arn
    out = ecs.describe_clusters(clusters=["prod", "ghost"], include=["TAGS"])
    assert out["clusters"][0]["status"] == "ACTIVE"
    assert out["clusters"][0]["tags"] == [{"key": "team", "value": "a"}]
    assert out["failures"] == [{"arn": "arn:aws:ecs:eu-west-1:000000000000:cluster/ghost", "reason": "MISSING"}]
    assert arn in ecs.list_clusters()["clusterArns"]
    inst = register_instance(ecs, "prod")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.delete_cluster(cluster="prod")
    assert code(e) == "ClusterContainsContainerInstancesException"
    ecs.deregister_container_instance(cluster="prod", containerInstance=inst["containerInstanceArn"])
    assert ecs.delete_cluster(cluster="prod")["cluster"]["status"] == "INACTIVE"
    assert arn not in ecs.list_clusters()["clusterArns"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.list_tasks(cluster="prod")
    assert code(e) == "ClusterNotFoundException"


def test_task_definitions(ecs):
    a = ecs.register_task_definition(**WEB)["taskDefinition"]
    b = ecs.register_task_definition(**WEB)["taskDefinition"]
    assert (a["revision"], b["revision"]) == (1, 2)
    assert a["containerDefinitions"][0]["essential"] is True
    assert a["networkMode"] == "bridge" and a["status"] == "ACTIVE"
    assert ecs.describe_task_definition(taskDefinition="web")["taskDefinition"]["revision"] == 2
    ecs.deregister_task_definition(taskDefinition="web:2")
    assert ecs.describe_task_definition(taskDefinition="web")["taskDefinition"]["revision"] == 1
    assert ecs.list_task_definitions(familyPrefix="web")["taskDefinitionArns"] == [a["taskDefinitionArn"]]
    inactive = ecs.list_task_definitions(status="INACTIVE")["taskDefinitionArns"]
    assert inactive == [b["taskDefinitionArn"]]
    assert ecs.list_task_definition_families()["families"] == ["web"]
    out = ecs.delete_task_definitions(taskDefinitions=["web:1", "web:2"])
    assert [d["status"] for d in out["taskDefinitions"]] == ["DELETE_IN_PROGRESS"]
    assert "ACTIVE status" in out["failures"][0]["reason"]
    # paginator: 5 more revisions, pages of 2, each exactly once
    for _ in range(5):
        ecs.register_task_definition(**WEB)
    pages = ecs.get_paginator("list_task_definitions").paginate(familyPrefix="web", PaginationConfig={"PageSize": 2})
    arns = [a for p in pages for a in p["taskDefinitionArns"]]
    assert len(arns) == len(set(arns)) == 6


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: d["containerDefinitions"][0].pop("image"), "image"),
    (lambda d: d["containerDefinitions"][0].update(memory=4), "6 MiB"),
    (lambda d: d.update(networkMode="bogus"), "networkMode"),
    (lambda d: d["containerDefinitions"].append(dict(d["containerDefinitions"][0])), "Duplicate container name"),
    (lambda d: d["containerDefinitions"][0].update(dependsOn=[{"containerName": "db", "condition": "START"}]), "'db'"),
])
def test_invalid_task_definitions_are_refused_and_nothing_is_written(ecs, mutate, needle):
    d = json.loads(json.dumps(WEB))
    mutate(d)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.register_task_definition(**d)
    assert code(e) == "ClientException"
    assert needle in e.value.response["Error"]["Message"]
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert ecs.list_task_definitions()["taskDefinitionArns"] == []


def test_auth_errors(wharf):
    import boto3
    bad = boto3.client("ecs", endpoint_url=wharf.url, region_name=REGION,
                       aws_access_key_id=KEY, aws_secret_access_key="wrong")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bad.list_clusters()
    assert code(e) == "InvalidSignatureException"
    unknown = boto3.client("ecs", endpoint_url=wharf.url, region_name=REGION,
                           aws_access_key_id="AKIANOBODY", aws_secret_access_key=SECRET)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        unknown.list_clusters()
    assert code(e) == "UnrecognizedClientException"


def test_instances_attributes_and_tags(ecs):
    inst = register_instance(ecs)
    arn = inst["containerInstanceArn"]
    assert inst["agentConnected"] is False
    res = {r["name"]: r for r in inst["remainingResources"]}
    assert res["CPU"]["integerValue"] == 2048 and res["PORTS"]["stringSetValue"] == ["22"]
    ecs.put_attributes(attributes=[{"name": "stack", "value": "prod", "targetId": arn}])
    listed = ecs.list_attributes(targetType="container-instance", attributeName="stack")["attributes"]
    assert listed == [{"name": "stack", "value": "prod", "targetType": "container-instance", "targetId": arn}]
    assert ecs.list_container_instances(filter="attribute:stack == prod")["containerInstanceArns"] == [arn]
    assert ecs.list_container_instances(filter="attribute:stack == dev")["containerInstanceArns"] == []
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.list_container_instances(filter="attribute:stack ~= x")
    assert code(e) == "InvalidParameterException"
    ecs.update_container_instances_state(containerInstances=[arn], status="DRAINING")
    assert ecs.describe_container_instances(containerInstances=[arn])["containerInstances"][0]["status"] == "DRAINING"
    ecs.tag_resource(resourceArn=arn, tags=[{"key": "k", "value": "v"}])
    assert ecs.list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "k", "value": "v"}]
    ecs.untag_resource(resourceArn=arn, tagKeys=["k"])
    assert ecs.list_tags_for_resource(resourceArn=arn)["tags"] == []
    out = ecs.describe_container_instances(containerInstances=[arn, "nope"])
    assert out["failures"][0]["reason"] == "MISSING"


class ProtocolAgent:
    """Drives the agent protocol the way a host agent does, without Docker:
    with agent credentials (from a join token), polls for the tasks of the
    instance it registered and reports them RUNNING, then STOPPED when asked."""

    def __init__(self, wharf, cluster, instance_arn, creds):
        self.wharf, self.cluster, self.arn, self.creds = wharf, cluster, instance_arn, creds
        self.rev = 0
        self.stop = threading.Event()

    def poll_once(self, wait=0):
        out = self.wharf.agent_call("Poll", {"cluster": self.cluster, "containerInstanceArn": self.arn,
                                             "afterRevision": self.rev, "waitMillis": wait}, self.creds)
        self.rev = out["revision"]
        return out["tasks"]

    def report(self, task, status, exit_code=None):
        containers = [{"name": c["name"], "runtimeId": "fake-" + c["name"], "status": status,
                       "exitCode": exit_code, "networkBindings": [
                           {"bindIP": "0.0.0.0", "containerPort": 80, "hostPort": 8080, "protocol": "tcp"}]}
                      for c in task["containers"]]
        self.wharf.agent_call("ReportTaskState", {"cluster": self.cluster, "taskArn": task["taskArn"],
                                                  "status": status, "containers": containers}, self.creds)

    def run(self):
        while not self.stop.is_set():
            for t in self.poll_once(wait=200):
                if t["desiredStatus"] == "RUNNING" and t["lastStatus"] != "RUNNING":
                    self.report(t, "RUNNING")
                elif t["desiredStatus"] == "STOPPED" and t["lastStatus"] != "STOPPED":
                    self.report(t, "STOPPED", exit_code=143)


def test_task_lifecycle_with_waiters_through_agent_protocol(wharf, ecs):
    creds = wharf.agent_credentials()
    inst = register_instance(wharf.client_with(creds))
    agent = ProtocolAgent(wharf, "default", inst["containerInstanceArn"], creds)
    agent.poll_once()  # connects
    desc = ecs.describe_container_instances(containerInstances=[inst["containerInstanceArn"]])
    assert desc["containerInstances"][0]["agentConnected"] is True
    ecs.register_task_definition(**WEB)
    run = ecs.run_task(taskDefinition="web", count=2, startedBy="tester")
    # Static host port 8080: only one task fits on the one instance.
    assert len(run["tasks"]) == 1
    assert run["failures"][0]["reason"] == "RESOURCE:PORTS"
    task = run["tasks"][0]
    assert task["lastStatus"] == "PROVISIONING" and task["desiredStatus"] == "RUNNING"
    assert task["taskArn"].startswith("arn:aws:ecs:eu-west-1:000000000000:task/default/")
    # Counted as pending, on the instance and in the cluster, until it runs.
    def counts():
        cl = ecs.describe_clusters(clusters=["default"])["clusters"][0]
        ci = ecs.describe_container_instances(containerInstances=[inst["containerInstanceArn"]])
        ci = ci["containerInstances"][0]
        return (cl["registeredContainerInstancesCount"], cl["pendingTasksCount"], cl["runningTasksCount"],
                ci["pendingTasksCount"], ci["runningTasksCount"])
    assert counts() == (1, 1, 0, 1, 0)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        ecs.get_waiter("tasks_running").wait(tasks=[task["taskArn"]], WaiterConfig={"Delay": 1, "MaxAttempts": 20})
        t = ecs.describe_tasks(tasks=[task["taskArn"]])["tasks"][0]
        assert t["containers"][0]["networkBindings"][0]["hostPort"] == 8080
        assert t["startedAt"] >= t["createdAt"]
        assert ecs.list_tasks(startedBy="tester")["taskArns"] == [task["taskArn"]]
        ci = ecs.describe_container_instances(containerInstances=[inst["containerInstanceArn"]])["containerInstances"][0]
        assert ci["runningTasksCount"] == 1
        assert counts() == (1, 0, 1, 0, 1)
        assert {r["name"]: r for r in ci["remainingResources"]}["MEMORY"]["integerValue"] == 4096 - 32
        # the aws CLI's waiter too
        env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION=REGION)
        subprocess.run(["aws", "--endpoint-url", wharf.url, "ecs", "wait", "tasks-running",
                        "--tasks", task["taskArn"]], env=env, check=True, timeout=60)
        stopped = ecs.stop_task(task=task["taskArn"], reason="done")["task"]
        assert stopped["desiredStatus"] == "STOPPED"
        ecs.get_waiter("tasks_stopped").wait(tasks=[task["taskArn"]], WaiterConfig={"Delay": 1, "MaxAttempts": 20})
        t = ecs.describe_tasks(tasks=[task["taskArn"]])["tasks"][0]
        assert (t["stopCode"], t["stoppedReason"]) == ("UserInitiated", "done")
        assert t["containers"][0]["exitCode"] == 143
        assert t["stoppedAt"] >= t["stoppingAt"] >= t["startedAt"]
        # the reservation is given back: the port is free again
        ci = ecs.describe_container_instances(containerInstances=[inst["containerInstanceArn"]])["containerInstances"][0]
        assert {r["name"]: r for r in ci["remainingResources"]}["MEMORY"]["integerValue"] == 4096
        assert counts() == (1, 0, 0, 0, 0)
        assert ecs.list_tasks(desiredStatus="STOPPED")["taskArns"] == [task["taskArn"]]
    finally:
        agent.stop.set()
        thread.join()


def test_state_survives_kill_9(wharf, ecs):
    register_instance(ecs)
    ecs.create_cluster(clusterName="keep")
    td = ecs.register_task_definition(**WEB)["taskDefinition"]["taskDefinitionArn"]
    wharf.kill()
    wharf.start()
    ecs = wharf.client()
    assert ecs.describe_task_definition(taskDefinition="web")["taskDefinition"]["taskDefinitionArn"] == td
    assert {c.rsplit("/", 1)[1] for c in ecs.list_clusters()["clusterArns"]} == {"default", "keep"}
    assert len(ecs.list_container_instances()["containerInstanceArns"]) == 1


def test_protocol_errors(wharf):
    import urllib.request, urllib.error
    # unsigned, unknown target
    req = urllib.request.Request(wharf.url + "/", data=b"{}", method="POST",
                                 headers={"X-Amz-Target": "Nope.Op"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    body = json.loads(e.value.read())
    assert body["__type"] == "MissingAuthenticationTokenException"
    assert e.value.headers["x-amzn-RequestId"]


def test_service_validation(ecs):
    ecs.create_cluster(clusterName="default")
    ecs.register_task_definition(family="svc", containerDefinitions=[{"name": "a", "image": "x", "memory": 16}])
    bad = [
        dict(placementConstraints=[{"type": "memberOf", "expression": "attribute:x =="}]),
        dict(placementStrategy=[{"type": "binpack", "field": "disk"}]),
        dict(deploymentConfiguration={"minimumHealthyPercent": 150}),
        dict(deploymentConfiguration={"maximumPercent": 50}),
        dict(desiredCount=-1),
    ]
    for extra in bad:
        with pytest.raises(ecs.exceptions.InvalidParameterException):
            ecs.create_service(serviceName="s", taskDefinition="svc", **{"desiredCount": 1, **extra})
    assert ecs.list_services()["serviceArns"] == []
    with pytest.raises(ecs.exceptions.ClientException) as e:
        ecs.create_service(serviceName="s", taskDefinition="nope", desiredCount=1)
    s = ecs.create_service(serviceName="s", taskDefinition="svc", desiredCount=0)["service"]
    assert s["serviceArn"].endswith(":service/default/s")
    assert s["deploymentConfiguration"]["maximumPercent"] == 200
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.create_service(serviceName="s", taskDefinition="svc", desiredCount=0)
    with pytest.raises(ecs.exceptions.ServiceNotFoundException):
        ecs.update_service(service="other", desiredCount=1)
    with pytest.raises(ecs.exceptions.ClusterContainsServicesException):
        ecs.delete_cluster(cluster="default")
    d = ecs.describe_clusters(clusters=["default"])["clusters"][0]
    assert d["activeServicesCount"] == 1


def test_list_tasks_pages_without_repeats(wharf, ecs):
    ecs.create_cluster(clusterName="default")
    creds = wharf.agent_credentials()
    inst = register_instance(wharf.client_with(creds), cpu=8192, mem=65536)
    ProtocolAgent(wharf, "default", inst["containerInstanceArn"], creds).poll_once()  # connects
    ecs.register_task_definition(family="many", containerDefinitions=[{"name": "a", "image": "x", "memory": 16}])
    ecs.register_task_definition(family="other", containerDefinitions=[{"name": "a", "image": "x", "memory": 16}])
    made = [t["taskArn"] for _ in range(3) for t in ecs.run_task(taskDefinition="many", count=10)["tasks"]]
    assert len(made) == 30
    other = ecs.run_task(taskDefinition="other", startedBy="me")["tasks"][0]["taskArn"]
    pages = list(ecs.get_paginator("list_tasks").paginate(family="many", PaginationConfig={"PageSize": 7}))
    listed = [a for p in pages for a in p["taskArns"]]
    assert sorted(listed) == sorted(made) and len(pages) == 5
    assert ecs.list_tasks(startedBy="me")["taskArns"] == [other]
    assert ecs.list_tasks(desiredStatus="STOPPED")["taskArns"] == []
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.list_tasks(nextToken="!!not-a-token!!")


def test_start_task_on_named_instances(wharf, ecs):
    ecs.create_cluster(clusterName="default")
    creds = wharf.agent_credentials()
    a, b, idle = (register_instance(wharf.client_with(creds))["containerInstanceArn"] for _ in range(3))
    for arn in (a, b):
        ProtocolAgent(wharf, "default", arn, creds).poll_once()  # connects; `idle` never does
    ecs.register_task_definition(family="pinned", containerDefinitions=[{"name": "a", "image": "x", "memory": 16}])
    out = ecs.start_task(taskDefinition="pinned", containerInstances=[b, a, idle], startedBy="pin")
    assert [t["containerInstanceArn"] for t in out["tasks"]] == [b, a]
    assert out["failures"] == [{"arn": idle, "reason": "AGENT"}]
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.start_task(taskDefinition="pinned", containerInstances=[])


def test_delete_cluster_waits_for_its_tasks_to_stop(wharf, ecs):
    ecs.create_cluster(clusterName="busy")
    creds = wharf.agent_credentials("busy")
    inst = register_instance(wharf.client_with(creds), "busy")
    agent = ProtocolAgent(wharf, "busy", inst["containerInstanceArn"], creds)
    agent.poll_once()  # connects
    ecs.register_task_definition(**WEB)
    task = ecs.run_task(cluster="busy", taskDefinition="web")["tasks"][0]
    # Forced: the instance goes, its task is told to stop but has not yet.
    ecs.deregister_container_instance(cluster="busy", containerInstance=inst["containerInstanceArn"], force=True)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.delete_cluster(cluster="busy")
    assert code(e) == "ClusterContainsTasksException"
    assert ecs.describe_clusters(clusters=["busy"])["clusters"][0]["status"] == "ACTIVE"
    agent.report(task, "STOPPED", exit_code=0)
    assert ecs.delete_cluster(cluster="busy")["cluster"]["status"] == "INACTIVE"
