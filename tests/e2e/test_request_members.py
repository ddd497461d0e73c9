"""Request members Wharf cannot act on are refused by name (never stored and
dropped); propagateTags and enableECSManagedTags tag the tasks they start."""
import time

import pytest
from botocore.exceptions import ClientError

from test_docker import wait_instance

IMAGE = "wharf-test/busybox:latest"


def refused(call, code, text):
    with pytest.raises(ClientError) as e:
        call()
    err = e.value.response["Error"]
    assert err["Code"] == code and text in err["Message"], err


def test_members_nothing_acts_on_are_refused(wharf, ecs):
    ecs.create_cluster(clusterName="default")
    ecs.register_task_definition(family="web", containerDefinitions=[
        {"name": "app", "image": IMAGE, "memory": 16}])
    ecs.register_task_definition(family="vpc", networkMode="awsvpc", containerDefinitions=[
        {"name": "app", "image": IMAGE, "memory": 16}])
    unsupported = "UnsupportedFeatureException"
    for extra, text in [
        ({"deploymentConfiguration": {"strategy": "BLUE_GREEN", "lifecycleHooks": [
            {"lifecycleStages": ["PRE_SCALE_UP"], "hookTargetArn": "arn:aws:lambda:us-east-1:0:function:f"}]}},
         "AWS_LAMBDA lifecycle hooks"),
        ({"deploymentConfiguration": {"alarms": {"alarmNames": ["a"], "enable": True, "rollback": True}}},
         "deploymentConfiguration.alarms"),
        ({"serviceConnectConfiguration": {"enabled": True, "namespace": "ns"}}, "Service Connect"),
        ({"availabilityZoneRebalancing": "ENABLED"}, "availabilityZoneRebalancing"),
    ]:
        refused(lambda: ecs.create_service(serviceName="s", taskDefinition="web", **extra), unsupported, text)
    refused(lambda: ecs.create_service(serviceName="s", taskDefinition="web", deploymentConfiguration={
        "bakeTimeInMinutes": 5}), "InvalidParameterException", "bakeTimeInMinutes applies to the BLUE_GREEN")
    refused(lambda: ecs.create_service(serviceName="s", taskDefinition="web", capacityProviderStrategy=[
        {"capacityProvider": "FARGATE", "weight": 1}]), "InvalidParameterException", "not associated with the cluster")
    refused(lambda: ecs.create_service(serviceName="s", taskDefinition="web", platformVersion="1.3.0"),
            "InvalidParameterException", "platform version (1.3.0) does not exist")
    # Nothing was written by the refused requests.
    assert ecs.list_services()["serviceArns"] == []

    ecs.create_service(serviceName="s", taskDefinition="web", desiredCount=0,
                       serviceConnectConfiguration={"enabled": False})
    for extra, text in [
        ({"deploymentController": {"type": "EXTERNAL"}}, "Changing a service's deployment controller"),
        ({"deploymentConfiguration": {"alarms": {"alarmNames": ["a"], "enable": True, "rollback": False}}},
         "deploymentConfiguration.alarms"),
    ]:
        refused(lambda: ecs.update_service(service="s", **extra), unsupported, text)

    refused(lambda: ecs.run_task(taskDefinition="web", capacityProviderStrategy=[
        {"capacityProvider": "FARGATE_SPOT", "weight": 1}]), "InvalidParameterException", "not associated with the cluster")
    refused(lambda: ecs.run_task(taskDefinition="web", propagateTags="SERVICE"),
            "InvalidParameterException", "SERVICE option of propagateTags")
    refused(lambda: ecs.run_task(taskDefinition="vpc", networkConfiguration={"awsvpcConfiguration": {
        "subnets": ["subnet-1"], "assignPublicIp": "ENABLED"}}),
            "InvalidParameterException", "Assign public IP is not supported for this launch type.")

    # Filters for what Wharf has none of return nothing, not everything.
    assert ecs.list_tasks(daemonName="agent")["taskArns"] == []
    assert ecs.list_services(resourceManagementType="ECS")["serviceArns"] == []
    assert len(ecs.list_services(resourceManagementType="CUSTOMER")["serviceArns"]) == 1


def test_propagated_and_managed_tags(wharf_up):
    ecs = wharf_up.client()
    wait_instance(ecs)
    ecs.register_task_definition(family="tagged", tags=[{"key": "team", "value": "core"}],
                                 containerDefinitions=[{"name": "app", "image": IMAGE, "memory": 16,
                                                        "command": ["sleep", "600"], "stopTimeout": 1}])
    arn = ecs.run_task(taskDefinition="tagged", propagateTags="TASK_DEFINITION", enableECSManagedTags=True,
                       tags=[{"key": "team", "value": "mine"}])["tasks"][0]["taskArn"]
    tags = {t["key"]: t["value"] for t in ecs.describe_tasks(tasks=[arn], include=["TAGS"])["tasks"][0]["tags"]}
    assert tags == {"team": "mine", "aws:ecs:clusterName": "default"}, tags

    ecs.create_service(serviceName="tagged", taskDefinition="tagged", desiredCount=1,
                       tags=[{"key": "tier", "value": "web"}], propagateTags="SERVICE", enableECSManagedTags=True)
    deadline = time.time() + 30
    while not (tasks := ecs.list_tasks(serviceName="tagged")["taskArns"]):
        assert time.time() < deadline, "the service started no task"
        time.sleep(0.2)
    tags = {t["key"]: t["value"] for t in ecs.describe_tasks(tasks=tasks, include=["TAGS"])["tasks"][0]["tags"]}
    assert tags == {"tier": "web", "aws:ecs:clusterName": "default", "aws:ecs:serviceName": "tagged"}, tags

    # Tags on the service itself, through the tagging API.
    service_arn = ecs.describe_services(services=["tagged"])["services"][0]["serviceArn"]
    ecs.tag_resource(resourceArn=service_arn, tags=[{"key": "owner", "value": "ops"}])
    ecs.untag_resource(resourceArn=service_arn, tagKeys=["tier"])
    assert ecs.list_tags_for_resource(resourceArn=service_arn)["tags"] == [{"key": "owner", "value": "ops"}]
    described = ecs.describe_services(services=["tagged"], include=["TAGS"])["services"][0]
    assert described["tags"] == [{"key": "owner", "value": "ops"}]


def test_cluster_members_are_kept_and_include_decides_what_describe_shows(wharf, ecs):
    made = ecs.create_cluster(
        clusterName="prod", capacityProviders=["FARGATE", "FARGATE_SPOT"],
        settings=[{"name": "containerInsights", "value": "enabled"}],
        configuration={"executeCommandConfiguration": {"logging": "DEFAULT"}},
        serviceConnectDefaults={"namespace": "prod.internal"})["cluster"]
    assert made["capacityProviders"] == ["FARGATE", "FARGATE_SPOT"]
    assert made["configuration"] == {"executeCommandConfiguration": {"logging": "DEFAULT"}}
    assert made["serviceConnectDefaults"] == {"namespace": "prod.internal"}
    plain = ecs.describe_clusters(clusters=["prod"])["clusters"][0]
    assert "settings" not in plain and "configuration" not in plain and plain["tags"] == [], plain
    assert plain["capacityProviders"] == ["FARGATE", "FARGATE_SPOT"]
    full = ecs.describe_clusters(clusters=["prod"], include=["SETTINGS", "CONFIGURATIONS"])["clusters"][0]
    assert full["settings"] == [{"name": "containerInsights", "value": "enabled"}]
    assert full["configuration"]["executeCommandConfiguration"]["logging"] == "DEFAULT"
    updated = ecs.update_cluster(cluster="prod", configuration={
        "executeCommandConfiguration": {"logging": "NONE"}})["cluster"]
    assert updated["configuration"] == {"executeCommandConfiguration": {"logging": "NONE"}}

    refused(lambda: ecs.create_cluster(clusterName="x", capacityProviders=["my-asg"]),
            "InvalidParameterException", "The specified capacity provider does not exist")
    refused(lambda: ecs.create_cluster(clusterName="x", capacityProviders=["FARGATE"],
                                       defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT", "weight": 1}]),
            "InvalidParameterException", "not associated with the cluster")
    assert [a.rsplit("/", 1)[1] for a in ecs.list_clusters()["clusterArns"]] == ["prod"], "nothing refused was made"


def test_registration_members_take_effect_or_are_refused(wharf, ecs):
    ecs.create_cluster(clusterName="default")
    resources = [{"name": "CPU", "type": "INTEGER", "integerValue": 1024},
                 {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024}]
    refused(lambda: ecs.register_container_instance(totalResources=resources + [
        {"name": "GPU", "type": "STRINGSET", "stringSetValue": ["gpu-0"]}]),
            "InvalidParameterException", "The resource GPU is not supported")
    refused(lambda: ecs.register_container_instance(totalResources=resources, platformDevices=[
        {"id": "gpu-0", "type": "GPU"}]), "UnsupportedFeatureException", "platformDevices")
    assert ecs.list_container_instances()["containerInstanceArns"] == [], "nothing refused was registered"

    arn = ecs.register_container_instance(totalResources=resources)["containerInstance"]["containerInstanceArn"]
    # Tags sent when an instance registers again are kept, as the first time.
    again = ecs.register_container_instance(totalResources=resources, containerInstanceArn=arn,
                                            tags=[{"key": "rack", "value": "r1"}])["containerInstance"]
    assert again["containerInstanceArn"] == arn
    assert ecs.list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "rack", "value": "r1"}]

    # StartTask on an instance that is not the cluster's: a MISSING failure, nothing started.
    ecs.register_task_definition(family="web", containerDefinitions=[{"name": "app", "image": IMAGE, "memory": 16}])
    out = ecs.start_task(taskDefinition="web", containerInstances=["0123456789abcdef0123456789abcdef"])
    assert out["tasks"] == [] and [f["reason"] for f in out["failures"]] == ["MISSING"], out
    assert out["failures"][0]["arn"].endswith("container-instance/default/0123456789abcdef0123456789abcdef")
    assert ecs.list_tasks()["taskArns"] == []
