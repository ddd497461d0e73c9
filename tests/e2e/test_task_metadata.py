"""The task metadata endpoint v4 on real Docker: every container of every
network mode reads itself, its task, its task's tags and Docker's stats at
$ECS_CONTAINER_METADATA_URI_V4, in the ECS agent's JSON."""
import json
import subprocess

from test_agent_features import container_ids
from test_docker import wait_instance

IMAGE = "wharf-test/busybox:latest"


def read(cid, path=""):
    """What the container gets from its metadata endpoint."""
    r = subprocess.run(["docker", "exec", cid, "sh", "-c", f'wget -q -O - "$ECS_CONTAINER_METADATA_URI_V4{path}"'],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_every_container_reads_its_task_s_metadata(wharf_up):
    ecs = wharf_up.client()
    wait_instance(ecs)
    # "side" reads its metadata as the first thing it does: it is served
    # before the container starts (else wget fails and the task stops).
    first = 'wget -q -O /tmp/first "$ECS_CONTAINER_METADATA_URI_V4" && exec sleep 600'
    pair = [{"name": n, "image": IMAGE, "memory": 32, "cpu": 64, "stopTimeout": 1, "command": command}
            for n, command in (("main", ["sleep", "600"]), ("side", ["sh", "-c", first]))]
    ecs.register_task_definition(family="md-bridge", containerDefinitions=pair)
    ecs.register_task_definition(family="md-host", networkMode="host", containerDefinitions=pair)
    ecs.register_task_definition(family="md-vpc", networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
                                 cpu="256", memory="512", containerDefinitions=pair)
    net = {"awsvpcConfiguration": {"subnets": ["subnet-0local"]}}
    tags = [{"key": "team", "value": "blue"}]
    arns = [ecs.run_task(taskDefinition="md-bridge", tags=tags)["tasks"][0]["taskArn"],
            ecs.run_task(taskDefinition="md-host")["tasks"][0]["taskArn"],
            ecs.run_task(taskDefinition="md-vpc", launchType="FARGATE", networkConfiguration=net)["tasks"][0]["taskArn"]]
    ecs.create_service(serviceName="md-svc", taskDefinition="md-bridge", desiredCount=1)
    ecs.get_waiter("tasks_running").wait(tasks=arns, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    ecs.get_waiter("services_stable").wait(services=["md-svc"], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    service_task = ecs.list_tasks(serviceName="md-svc")["taskArns"][0]
    cluster_arn = ecs.describe_clusters()["clusters"][0]["clusterArn"]
    for arn, mode, launch in zip(arns, ("bridge", "host", "awsvpc"), ("EC2", "EC2", "FARGATE")):
        described = ecs.describe_tasks(tasks=[arn])["tasks"][0]
        by_name = {c["name"]: c for c in described["containers"]}
        ids = container_ids(arn)
        me = read(ids["main"])
        assert me["DockerId"] == subprocess.run(["docker", "inspect", "-f", "{{.Id}}", ids["main"]],
                                                capture_output=True, text=True).stdout.strip()
        assert me["Name"] == "main" and me["ContainerARN"] == by_name["main"]["containerArn"], me
        assert me["KnownStatus"] == "RUNNING" and me["DesiredStatus"] == "RUNNING"
        assert me["Limits"] == {"CPU": 64, "Memory": 32} and me["Type"] == "NORMAL"
        assert me["Image"] == IMAGE and me["ImageID"].startswith("sha256:")
        assert me["Labels"]["com.amazonaws.ecs.task-arn"] == arn
        assert me["Networks"][0]["NetworkMode"] == mode, me
        assert me["CreatedAt"].endswith("Z") and me["StartedAt"].endswith("Z")
        if mode == "awsvpc":
            ip = {d["name"]: d["value"] for d in described["attachments"][0]["details"]}["privateIPv4Address"]
            assert me["Networks"][0]["IPv4Addresses"] == [ip]
        at_start = subprocess.run(["docker", "exec", ids["side"], "cat", "/tmp/first"], capture_output=True, text=True)
        assert json.loads(at_start.stdout)["Name"] == "side", at_start
        task = read(ids["side"], "/task")
        assert task["TaskARN"] == arn and task["Cluster"] == cluster_arn
        assert task["Family"] == f"md-{mode.replace('awsvpc', 'vpc')}" and task["Revision"] == "1"
        assert task["LaunchType"] == launch and task["KnownStatus"] == "RUNNING"
        assert sorted(c["Name"] for c in task["Containers"]) == ["main", "side"], "the pause container is not shown"
        assert "ServiceName" not in task
        if mode == "awsvpc":
            assert task["Limits"] == {"CPU": 0.25, "Memory": 512}
        # Docker's stats, of the container and of the whole task.
        stats = read(ids["main"], "/stats")
        assert stats["id"] == me["DockerId"] and "memory_stats" in stats and "cpu_stats" in stats
        every = read(ids["main"], "/task/stats")
        assert set(every) == {c["DockerId"] for c in task["Containers"]}
    assert read(container_ids(arns[0])["main"], "/taskWithTags")["TaskTags"] == {"team": "blue"}
    assert read(container_ids(service_task)["main"], "/task")["ServiceName"] == "md-svc"
    ecs.delete_service(service="md-svc", force=True)
    for arn in arns:
        ecs.stop_task(task=arn)
    ecs.get_waiter("tasks_stopped").wait(tasks=arns, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
