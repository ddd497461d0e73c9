"""Service scheduling across several hosts (agents driven through the agent
protocol, no Docker): placement strategies and constraints, DAEMON services,
draining, service deployments and StopServiceDeployment."""
import threading
import time

import pytest

from test_ecs_api import ProtocolAgent

TD = {"family": "app", "containerDefinitions": [{"name": "app", "image": "app", "cpu": 128, "memory": 64}]}


def host(ecs, zone):
    return ecs.register_container_instance(cluster="default", totalResources=[
        {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096},
    ], attributes=[{"name": "zone", "value": zone}])["containerInstance"]["containerInstanceArn"]


@pytest.fixture
def fleet(wharf, ecs):
    """Four hosts in zones a, a, b, c, each with a protocol agent that runs what it is given."""
    ecs.create_cluster(clusterName="default")
    creds = wharf.agent_credentials()
    arns = [host(wharf.client_with(creds), z) for z in "aabc"]
    agents = [ProtocolAgent(wharf, "default", a, creds) for a in arns]
    for a in agents:
        a.poll_once()  # every host connected before the test places anything
    threads = [threading.Thread(target=a.run, daemon=True) for a in agents]
    for t in threads:
        t.start()
    yield dict(zip(arns, "aabc"))
    for a in agents:
        a.stop.set()
    for t in threads:
        t.join(timeout=5)


def live_tasks(ecs, service):
    arns = ecs.list_tasks(serviceName=service)["taskArns"]
    return ecs.describe_tasks(tasks=arns)["tasks"] if arns else []


def settle(ecs, service, pred, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        s = ecs.describe_services(services=[service])["services"][0]
        if pred(s):
            return s
        time.sleep(0.3)
    raise AssertionError(f"{service} did not settle: {s['deployments']} {[e['message'] for e in s['events'][:5]]}")


def completed(n):
    return lambda s: (s["runningCount"] == n and len(s["deployments"]) == 1
                      and s["deployments"][0]["rolloutState"] == "COMPLETED")


def test_spread_constraints_and_draining(ecs, fleet):
    ecs.register_task_definition(**TD)
    ecs.create_service(serviceName="spread", taskDefinition="app", desiredCount=6, placementStrategy=[
        {"type": "spread", "field": "attribute:zone"}, {"type": "spread", "field": "instanceId"}])
    settle(ecs, "spread", completed(6))
    per_zone = {}
    for t in live_tasks(ecs, "spread"):
        z = fleet[t["containerInstanceArn"]]
        per_zone[z] = per_zone.get(z, 0) + 1
    assert per_zone == {"a": 2, "b": 2, "c": 2}, per_zone

    ecs.create_service(serviceName="member", taskDefinition="app", desiredCount=4,
                       placementConstraints=[{"type": "memberOf", "expression": "attribute:zone in [a, b]"}],
                       placementStrategy=[{"type": "binpack", "field": "memory"}])
    settle(ecs, "member", completed(4))
    hosts = {t["containerInstanceArn"] for t in live_tasks(ecs, "member")}
    assert all(fleet[h] in "ab" for h in hosts)
    assert len(hosts) == 1, "binpack fills one host first"

    # Draining the zone-c host moves its tasks elsewhere.
    c_host = next(a for a, z in fleet.items() if z == "c")
    ecs.update_container_instances_state(containerInstances=[c_host], status="DRAINING")
    settle(ecs, "spread", lambda s: completed(6)(s) and all(
        t["containerInstanceArn"] != c_host for t in live_tasks(ecs, "spread")))

    # Nothing fits: an event says so, as ECS words it.
    ecs.register_task_definition(family="huge", containerDefinitions=[{"name": "a", "image": "a", "memory": 8000}])
    ecs.create_service(serviceName="huge", taskDefinition="huge", desiredCount=1)
    s = settle(ecs, "huge", lambda s: any("was unable to place a task" in e["message"] for e in s["events"]))
    msg = next(e["message"] for e in s["events"] if "unable to place" in e["message"])
    assert "has insufficient memory available" in msg, msg


def test_daemon_follows_the_hosts(ecs, fleet):
    ecs.register_task_definition(**TD)
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.create_service(serviceName="d", taskDefinition="app", schedulingStrategy="DAEMON",
                           placementStrategy=[{"type": "random"}])
    ecs.create_service(serviceName="d", taskDefinition="app", schedulingStrategy="DAEMON",
                       placementConstraints=[{"type": "memberOf", "expression": "attribute:zone != c"}])
    settle(ecs, "d", completed(3))
    hosts = [t["containerInstanceArn"] for t in live_tasks(ecs, "d")]
    assert sorted(fleet[h] for h in hosts) == ["a", "a", "b"] and len(set(hosts)) == 3
    b_host = next(a for a, z in fleet.items() if z == "b")
    ecs.update_container_instances_state(containerInstances=[b_host], status="DRAINING")
    s = settle(ecs, "d", completed(2))
    assert s["desiredCount"] == 2
    ecs.update_container_instances_state(containerInstances=[b_host], status="ACTIVE")
    settle(ecs, "d", completed(3))


def test_service_deployments_and_stop_with_rollback(ecs, fleet):
    ecs.register_task_definition(**TD)
    ecs.create_service(serviceName="web", taskDefinition="app", desiredCount=2)
    settle(ecs, "web", completed(2))
    v2 = ecs.register_task_definition(**TD)["taskDefinition"]["taskDefinitionArn"]
    ecs.update_service(service="web", taskDefinition=v2)
    settle(ecs, "web", lambda s: completed(2)(s) and s["taskDefinition"] == v2)
    listed = ecs.list_service_deployments(service="web")["serviceDeployments"]
    assert [d["status"] for d in listed] == ["SUCCESSFUL", "SUCCESSFUL"]
    newest = ecs.describe_service_deployments(serviceDeploymentArns=[listed[0]["serviceDeploymentArn"]])
    d = newest["serviceDeployments"][0]
    assert d["targetServiceRevision"]["requestedTaskCount"] == 2
    assert len(d["sourceServiceRevisions"]) == 1
    assert ":service-deployment/default/web/" in d["serviceDeploymentArn"]
    # The revisions a deployment went from and to say what each ran.
    revisions = ecs.describe_service_revisions(serviceRevisionArns=[
        d["targetServiceRevision"]["arn"], d["sourceServiceRevisions"][0]["arn"], d["targetServiceRevision"]["arn"][:-3] + "000"])
    target, source = revisions["serviceRevisions"]
    assert target["taskDefinition"] == v2 and source["taskDefinition"].endswith("app:1"), revisions
    assert target["launchType"] == "EC2" and target["loadBalancers"] == []
    assert target["containerImages"] == [{"containerName": "app", "image": "app"}], target
    assert ":service-revision/default/web/" in target["serviceRevisionArn"]
    assert [f["reason"] for f in revisions["failures"]] == ["MISSING"]

    # A revision that can't be placed (more memory than any host has) stays IN_PROGRESS...
    ecs.register_task_definition(family="app", containerDefinitions=[{"name": "app", "image": "app", "memory": 8000}])
    ecs.update_service(service="web", taskDefinition="app")
    current = ecs.list_service_deployments(service="web", status=["IN_PROGRESS"])["serviceDeployments"]
    assert len(current) == 1
    # ...until StopServiceDeployment rolls it back.
    ecs.stop_service_deployment(serviceDeploymentArn=current[0]["serviceDeploymentArn"], stopType="ROLLBACK")
    s = settle(ecs, "web", lambda s: completed(2)(s) and s["taskDefinition"] == v2)
    d = ecs.describe_service_deployments(serviceDeploymentArns=[current[0]["serviceDeploymentArn"]])
    d = d["serviceDeployments"][0]
    assert d["status"] == "ROLLBACK_SUCCESSFUL", d
    assert d["rollback"]["serviceRevisionArn"].endswith(listed[0]["serviceDeploymentArn"].rsplit("/", 1)[1])
    with pytest.raises(ecs.exceptions.ClientError):
        ecs.stop_service_deployment(serviceDeploymentArn=current[0]["serviceDeploymentArn"])
    missing = ecs.describe_service_deployments(
        serviceDeploymentArns=[current[0]["serviceDeploymentArn"][:-3] + "000"])
    assert missing["failures"][0]["reason"] == "MISSING"
