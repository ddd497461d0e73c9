"""Capacity providers: the built-in FARGATE and FARGATE_SPOT, custom providers
joined by `wharf agent --capacity-provider`, strategies with base and weight
on RunTask and services, and Spot interruptions with `wharf interrupt`."""
import os
import subprocess
import time

import pytest
from botocore.exceptions import ClientError

from conftest import BINARY, KEY, SECRET, remove_test_containers, wait_for
from test_docker import wait_instance

IMAGE = "wharf-test/busybox:latest"
ASG = "arn:aws:autoscaling:eu-west-1:000000000000:autoScalingGroup:1:autoScalingGroupName/pool"


def refused(call, code, text):
    with pytest.raises(ClientError) as e:
        call()
    err = e.value.response["Error"]
    assert err["Code"] == code and text in err["Message"], err


def test_capacity_provider_api(wharf):
    ecs = wharf.client()
    invalid, client = "InvalidParameterException", "ClientException"
    refused(lambda: ecs.create_capacity_provider(name="fargate-pool", autoScalingGroupProvider={
        "autoScalingGroupArn": ASG}), invalid, 'prefixed with "aws", "ecs", or "fargate"')
    refused(lambda: ecs.create_capacity_provider(name="pool", autoScalingGroupProvider={
        "autoScalingGroupArn": ASG, "managedScaling": {"status": "ENABLED"}}),
            "UnsupportedFeatureException", "managedScaling ENABLED")
    refused(lambda: ecs.create_capacity_provider(name="pool", autoScalingGroupProvider={
        "autoScalingGroupArn": ASG, "managedTerminationProtection": "ENABLED"}), invalid, "managed scaling must be turned on")
    # Nothing was written by the refusals: only the built-in providers exist.
    assert [p["name"] for p in ecs.describe_capacity_providers()["capacityProviders"]] == ["FARGATE", "FARGATE_SPOT"]

    made = ecs.create_capacity_provider(name="pool", autoScalingGroupProvider={"autoScalingGroupArn": ASG},
                                        tags=[{"key": "team", "value": "core"}])["capacityProvider"]
    assert made["capacityProviderArn"].endswith(":capacity-provider/pool") and made["status"] == "ACTIVE"
    asg = made["autoScalingGroupProvider"]
    assert asg["managedScaling"]["status"] == "DISABLED" and asg["managedDraining"] == "ENABLED", asg
    refused(lambda: ecs.create_capacity_provider(name="pool", autoScalingGroupProvider={"autoScalingGroupArn": ASG}),
            client, "already exists")
    ecs.create_capacity_provider(name="other", autoScalingGroupProvider={"autoScalingGroupArn": ASG + "2"})

    # Describe: everything, by name with a failure, with tags, in pages of one.
    described = ecs.describe_capacity_providers(capacityProviders=["pool", "FARGATE_SPOT", "nope"], include=["TAGS"])
    assert [p["name"] for p in described["capacityProviders"]] == ["pool", "FARGATE_SPOT"]
    assert described["capacityProviders"][0]["tags"] == [{"key": "team", "value": "core"}]
    assert described["failures"][0]["reason"] == "MISSING"
    names, token = [], None
    while True:
        page = ecs.describe_capacity_providers(maxResults=1, **({"nextToken": token} if token else {}))
        names += [p["name"] for p in page["capacityProviders"]]
        token = page.get("nextToken")
        if not token:
            break
    assert names == ["FARGATE", "FARGATE_SPOT", "other", "pool"], names
    ecs.tag_resource(resourceArn=made["capacityProviderArn"], tags=[{"key": "tier", "value": "1"}])
    assert len(ecs.list_tags_for_resource(resourceArn=made["capacityProviderArn"])["tags"]) == 2
    updated = ecs.update_capacity_provider(name="pool", autoScalingGroupProvider={"managedDraining": "DISABLED"})
    assert updated["capacityProvider"]["autoScalingGroupProvider"]["managedDraining"] == "DISABLED"
    assert updated["capacityProvider"]["updateStatus"] == "UPDATE_COMPLETE"

    # Clusters: providers associated, a default strategy, one cluster per custom provider.
    cluster = ecs.create_cluster(clusterName="cp", capacityProviders=["FARGATE", "pool"],
                                 defaultCapacityProviderStrategy=[{"capacityProvider": "pool", "weight": 1, "base": 2}])
    assert cluster["cluster"]["capacityProviders"] == ["FARGATE", "pool"]
    assert cluster["cluster"]["defaultCapacityProviderStrategy"] == [
        {"capacityProvider": "pool", "weight": 1, "base": 2}]
    refused(lambda: ecs.put_cluster_capacity_providers(cluster="default", capacityProviders=["pool"],
                                                       defaultCapacityProviderStrategy=[]),
            "ClusterNotFoundException", "")
    ecs.create_cluster(clusterName="second")
    refused(lambda: ecs.put_cluster_capacity_providers(cluster="second", capacityProviders=["pool"],
                                                       defaultCapacityProviderStrategy=[]), invalid,
            "already associated with cluster cp")
    refused(lambda: ecs.put_cluster_capacity_providers(cluster="cp", capacityProviders=["FARGATE"],
                                                       defaultCapacityProviderStrategy=[
                                                           {"capacityProvider": "FARGATE_SPOT", "weight": 1}]),
            invalid, "not associated with the cluster")
    refused(lambda: ecs.put_cluster_capacity_providers(cluster="cp", capacityProviders=["FARGATE", "FARGATE_SPOT"],
                                                       defaultCapacityProviderStrategy=[
                                                           {"capacityProvider": "FARGATE", "weight": 0}]),
            invalid, "weight value greater than zero")
    refused(lambda: ecs.delete_capacity_provider(capacityProvider="pool"), client, "associated with cluster cp")
    assert [p["name"] for p in ecs.describe_capacity_providers(cluster="cp")["capacityProviders"]] == ["FARGATE", "pool"]

    # Strategies are checked as ECS checks them.
    ecs.register_task_definition(family="web", containerDefinitions=[{"name": "app", "image": IMAGE, "memory": 16}])
    refused(lambda: ecs.run_task(cluster="cp", taskDefinition="web", launchType="EC2", capacityProviderStrategy=[
        {"capacityProvider": "pool", "weight": 1}]), invalid, "Specifying both a launch type and capacity provider strategy")
    refused(lambda: ecs.run_task(cluster="cp", taskDefinition="web", capacityProviderStrategy=[
        {"capacityProvider": "pool", "weight": 1}, {"capacityProvider": "FARGATE", "weight": 1}]), invalid, "mix")
    refused(lambda: ecs.create_service(cluster="cp", serviceName="s", taskDefinition="web", capacityProviderStrategy=[
        {"capacityProvider": "pool", "weight": 1, "base": 1}, {"capacityProvider": "other", "weight": 1, "base": 1}]),
            invalid, "not associated")
    # With no launch type the default strategy applies: a custom provider
    # with no instance fails the placement as EC2 does.
    refused(lambda: ecs.run_task(cluster="cp", taskDefinition="web"), invalid, "No Container Instances were found")
    svc = ecs.create_service(cluster="cp", serviceName="s", taskDefinition="web", desiredCount=0)["service"]
    assert svc["capacityProviderStrategy"] == [{"capacityProvider": "pool", "weight": 1, "base": 2}]
    assert "launchType" not in svc, svc
    refused(lambda: ecs.put_cluster_capacity_providers(cluster="cp", capacityProviders=["FARGATE"],
                                                       defaultCapacityProviderStrategy=[]),
            "ResourceInUseException", "in use")
    ecs.delete_service(cluster="cp", service="s")
    # A deleted service uses its strategy until it is INACTIVE (the
    # controller's next pass, as it has no tasks).
    ecs.get_waiter("services_inactive").wait(cluster="cp", services=["s"],
                                             WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    out = ecs.put_cluster_capacity_providers(cluster="cp", capacityProviders=["FARGATE"], defaultCapacityProviderStrategy=[])
    assert out["cluster"]["capacityProviders"] == ["FARGATE"] and out["cluster"]["defaultCapacityProviderStrategy"] == []
    deleted = ecs.delete_capacity_provider(capacityProvider="pool")["capacityProvider"]
    assert deleted["status"] == "INACTIVE" and deleted["updateStatus"] == "DELETE_COMPLETE"
    assert ecs.describe_capacity_providers(capacityProviders=["pool"])["capacityProviders"][0]["status"] == "INACTIVE"
    # The name can be taken again; a deleted one is gone from the listing.
    assert "pool" not in [p["name"] for p in ecs.describe_capacity_providers()["capacityProviders"]]
    ecs.create_capacity_provider(name="pool", autoScalingGroupProvider={"autoScalingGroupArn": ASG})
    refused(lambda: ecs.delete_capacity_provider(capacityProvider="FARGATE"), client, "reserved")
    # An instance cannot join a provider that does not exist.
    refused(lambda: ecs.register_container_instance(cluster="cp", totalResources=[
        {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024}],
        attributes=[{"name": "wharf.capacity-provider", "value": "nope"}]), client, "'nope' does not exist")
    assert ecs.list_container_instances(cluster="cp")["containerInstanceArns"] == []


def fargate_task(ecs, family, command):
    ecs.register_task_definition(
        family=family, networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
        containerDefinitions=[{"name": "app", "image": IMAGE, "command": ["sh", "-c", command], "stopTimeout": 2}])


def describe(ecs, arns):
    return ecs.describe_tasks(tasks=arns)["tasks"] if arns else []


def test_strategies_place_by_base_and_weight_and_spot_is_interrupted(wharf_up):
    ecs = wharf_up.client()
    wait_instance(ecs)
    net = {"awsvpcConfiguration": {"subnets": ["subnet-1"]}}
    ecs.put_cluster_capacity_providers(cluster="default", capacityProviders=["FARGATE", "FARGATE_SPOT"],
                                       defaultCapacityProviderStrategy=[])
    fargate_task(ecs, "sleepy", "sleep 600")
    run = ecs.run_task(taskDefinition="sleepy", count=4, networkConfiguration=net, capacityProviderStrategy=[
        {"capacityProvider": "FARGATE", "weight": 1, "base": 1}, {"capacityProvider": "FARGATE_SPOT", "weight": 3}])
    assert run["failures"] == [], run["failures"]
    providers = sorted(t["capacityProviderName"] for t in run["tasks"])
    # The base first, then the other three split 1:3, each to the provider
    # furthest below its share.
    assert providers == ["FARGATE", "FARGATE", "FARGATE_SPOT", "FARGATE_SPOT"], providers
    assert {t["launchType"] for t in run["tasks"]} == {"FARGATE"}
    arns = [t["taskArn"] for t in run["tasks"]]
    wait_for(lambda: all(t["lastStatus"] == "RUNNING" for t in describe(ecs, arns)), "the tasks to run")
    for arn in arns:
        ecs.stop_task(task=arn)

    # A service on FARGATE_SPOT: its containers trap SIGTERM and say so with
    # their exit code; one ignores it to show the two-minute warning holds
    # past the container's own stopTimeout.
    fargate_task(ecs, "spot", "trap 'exit 7' TERM; while true; do sleep 0.2; done")
    ecs.create_service(serviceName="spot", taskDefinition="spot", desiredCount=2, networkConfiguration=net,
                       capacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT", "weight": 1}])
    first = wait_for(lambda: (lambda ts: ts if len(ts) == 2 and all(t["lastStatus"] == "RUNNING" for t in ts) else None)(
        describe(ecs, ecs.list_tasks(serviceName="spot", desiredStatus="RUNNING")["taskArns"])), "two spot tasks")
    assert {t["capacityProviderName"] for t in first} == {"FARGATE_SPOT"}
    cluster = ecs.describe_clusters(include=["STATISTICS", "ATTACHMENTS"])["clusters"][0]
    stats = {s["name"]: int(s["value"]) for s in cluster["statistics"]}
    assert stats["runningFargateTasksCount"] >= 2 and stats["runningEC2TasksCount"] == 0, stats
    assert stats["activeFargateServiceCount"] == 1 and stats["activeEC2ServiceCount"] == 0, stats
    assert cluster["attachments"] == []
    assert ecs.describe_clusters()["clusters"][0]["statistics"] == []
    env = dict(os.environ, WHARF_SERVER=wharf_up.url, WHARF_ACCESS_KEY_ID=KEY, WHARF_SECRET_ACCESS_KEY=SECRET)
    # A task not on FARGATE_SPOT cannot be interrupted.
    out = subprocess.run([BINARY, "interrupt", arns[0]], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "FARGATE_SPOT" in out.stdout + out.stderr, out
    out = subprocess.run([BINARY, "interrupt", "--service", "spot"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    first_arns = [t["taskArn"] for t in first]
    stopped = wait_for(lambda: (lambda ts: ts if all(t["lastStatus"] == "STOPPED" for t in ts) else None)(
        describe(ecs, first_arns)), "the interrupted tasks to stop")
    for t in stopped:
        assert t["stopCode"] == "SpotInterruption" and t["stoppedReason"] == "Your Spot Task was interrupted.", t
        assert t["containers"][0]["exitCode"] == 7, t["containers"]
    # The service replaces them, on FARGATE_SPOT again.
    again = wait_for(lambda: (lambda ts: ts if len(ts) == 2 and all(t["lastStatus"] == "RUNNING" for t in ts) else None)(
        describe(ecs, ecs.list_tasks(serviceName="spot", desiredStatus="RUNNING")["taskArns"])), "replacements")
    assert {t["capacityProviderName"] for t in again} == {"FARGATE_SPOT"}
    assert not {t["taskArn"] for t in again} & set(first_arns)

    # SIGTERM ignored: the container outlives its stopTimeout (2 s) under
    # the two-minute warning, where a StopTask would have killed it.
    fargate_task(ecs, "stubborn", "trap '' TERM; while true; do sleep 0.2; done")
    ecs.update_service(service="spot", taskDefinition="stubborn", desiredCount=1)
    target = wait_for(lambda: (lambda ts: ts[0] if ts and ts[0]["lastStatus"] == "RUNNING" else None)(
        [t for t in describe(ecs, ecs.list_tasks(serviceName="spot", desiredStatus="RUNNING")["taskArns"])
         if t["taskDefinitionArn"].endswith("stubborn:1")]), "a stubborn task", timeout=90)
    out = subprocess.run([BINARY, "interrupt", target["taskArn"]], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    time.sleep(6)
    t = describe(ecs, [target["taskArn"]])[0]
    assert t["desiredStatus"] == "STOPPED" and t["lastStatus"] != "STOPPED", t
    ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.amazonaws.ecs.task-arn={target['taskArn']}",
                          "--filter", "label=com.amazonaws.ecs.container-name=app"],
                         capture_output=True, text=True).stdout.split()
    assert len(ids) == 1, "the container still runs within the warning"
    subprocess.run(["docker", "kill", *ids], capture_output=True)
    wait_for(lambda: describe(ecs, [target["taskArn"]])[0]["lastStatus"] == "STOPPED", "the killed task to stop")


def test_custom_provider_tasks_run_on_the_instances_that_joined_it(wharf, tmp_path):
    """`wharf server` with two agents on this Docker, one joined to a custom
    capacity provider: a strategy naming it places only there."""
    ecs = wharf.client()
    ecs.create_capacity_provider(name="pool", autoScalingGroupProvider={"autoScalingGroupArn": ASG})
    ecs.create_cluster(clusterName="default", capacityProviders=["pool"])
    env = dict(os.environ, WHARF_SERVER=wharf.url, WHARF_ACCESS_KEY_ID=KEY, WHARF_SECRET_ACCESS_KEY=SECRET)
    agents = []
    try:
        for name, extra in (("plain", []), ("pooled", ["--capacity-provider", "pool"])):
            token = subprocess.run([BINARY, "token", "create", "--cluster", "default"], env=env,
                                   capture_output=True, text=True, check=True).stdout.strip()
            log = open(tmp_path / f"agent-{name}.log", "ab")
            agents.append(subprocess.Popen([BINARY, "agent", "--server", wharf.url, "--token", token,
                                            "--data-dir", str(tmp_path / f"agent-{name}"), *extra],
                                           env=dict(os.environ, WHARF_LOG="warn"), stderr=log))
        instances = wait_for(lambda: (lambda a: a if len(a) == 2 else None)(
            ecs.list_container_instances()["containerInstanceArns"]), "both agents to register", timeout=30)
        described = ecs.describe_container_instances(containerInstances=instances)["containerInstances"]
        pooled = [i["containerInstanceArn"] for i in described if i.get("capacityProviderName") == "pool"]
        assert len(pooled) == 1, described
        refused(lambda: ecs.put_attributes(attributes=[{"name": "wharf.capacity-provider", "value": "x",
                                                        "targetId": instances[0]}]),
                "InvalidParameterException", "cannot be changed")
        ecs.register_task_definition(family="web", containerDefinitions=[
            {"name": "app", "image": IMAGE, "memory": 16, "command": ["sleep", "600"], "stopTimeout": 1}])
        placed = []
        for _ in range(3):
            run = ecs.run_task(taskDefinition="web", count=2,
                               capacityProviderStrategy=[{"capacityProvider": "pool", "weight": 1}])
            assert run["failures"] == [], run["failures"]
            placed += run["tasks"]
        assert {t["containerInstanceArn"] for t in placed} == set(pooled), placed
        assert {t["capacityProviderName"] for t in placed} == {"pool"}
        assert {t["launchType"] for t in placed} == {"EC2"}
        # A service by the strategy lands there too and shows it.
        ecs.create_service(serviceName="pooled", taskDefinition="web", desiredCount=2,
                           capacityProviderStrategy=[{"capacityProvider": "pool", "weight": 1}])
        tasks = wait_for(lambda: (lambda ts: ts if len(ts) == 2 and all(t["lastStatus"] == "RUNNING" for t in ts)
                                  else None)(describe(ecs, ecs.list_tasks(serviceName="pooled")["taskArns"])),
                         "the service's tasks", timeout=60)
        assert {t["containerInstanceArn"] for t in tasks} == set(pooled)
    finally:
        for a in agents:
            a.kill()
            a.wait()
        remove_test_containers()
