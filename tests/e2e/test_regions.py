"""ECS is regional: every resource lives in the region its request is
signed for. The same name in two regions is two resources, an ARN of
another region names nothing, and agents register in the region they sign
for. (Existing data moving into its region on upgrade is
`wharf_control::migrate`'s unit test.)"""
import json
import os
import subprocess

import urllib.error
import urllib.request

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest
from botocore.exceptions import ClientError

from conftest import KEY, REGION, SECRET, wait_for
from test_docker import wait_instance

IMAGE = "wharf-test/busybox:latest"
OTHER = "us-east-1"
assert OTHER != REGION


def client(w, region, service="ecs"):
    return boto3.client(service, endpoint_url=w.url, region_name=region,
                        aws_access_key_id=KEY, aws_secret_access_key=SECRET)


def refused(call, code):
    with pytest.raises(ClientError) as e:
        call()
    assert e.value.response["Error"]["Code"] == code, e.value.response["Error"]
    return e.value.response["Error"]["Message"]


def aws_cli(w, region, *args):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION=region)
    out = subprocess.run(["aws", "--endpoint-url", w.url, "--output", "json", *args], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_resources_of_two_regions_are_apart(wharf):
    here, there = client(wharf, REGION), client(wharf, OTHER)
    a = here.create_cluster(clusterName="shared", tags=[{"key": "r", "value": "here"}])["cluster"]
    b = there.create_cluster(clusterName="shared")["cluster"]
    # Two clusters, not one returned twice.
    assert a["clusterArn"] == f"arn:aws:ecs:{REGION}:000000000000:cluster/shared"
    assert b["clusterArn"] == f"arn:aws:ecs:{OTHER}:000000000000:cluster/shared"
    there.create_cluster(clusterName="only-there")
    # Listed where they live, through the aws CLI too.
    assert aws_cli(wharf, REGION, "ecs", "list-clusters")["clusterArns"] == [a["clusterArn"]]
    assert sorted(aws_cli(wharf, OTHER, "ecs", "list-clusters")["clusterArns"]) == sorted(
        [b["clusterArn"], f"arn:aws:ecs:{OTHER}:000000000000:cluster/only-there"])
    # An ARN of another region is not found, even where the name exists.
    described = here.describe_clusters(clusters=[b["clusterArn"], "only-there"], include=["TAGS"])
    assert described["clusters"] == []
    assert sorted(f["arn"] for f in described["failures"]) == sorted(
        [b["clusterArn"], f"arn:aws:ecs:{REGION}:000000000000:cluster/only-there"])
    assert here.describe_clusters(clusters=["shared"], include=["TAGS"])["clusters"][0]["tags"] == [
        {"key": "r", "value": "here"}]
    assert there.describe_clusters(clusters=["shared"], include=["TAGS"])["clusters"][0]["tags"] == []
    refused(lambda: here.list_services(cluster=b["clusterArn"]), "ClusterNotFoundException")
    refused(lambda: here.list_tags_for_resource(resourceArn=b["clusterArn"]), "InvalidParameterException")

    # Task definitions: each region numbers its own revisions.
    td = {"family": "web", "containerDefinitions": [{"name": "app", "image": IMAGE, "memory": 16}]}
    here.register_task_definition(**td)
    here.register_task_definition(**td)
    theirs = there.register_task_definition(**td)["taskDefinition"]
    assert theirs["revision"] == 1
    assert theirs["taskDefinitionArn"] == f"arn:aws:ecs:{OTHER}:000000000000:task-definition/web:1"
    assert here.describe_task_definition(taskDefinition="web")["taskDefinition"]["revision"] == 2
    refused(lambda: here.describe_task_definition(taskDefinition=theirs["taskDefinitionArn"]), "ClientException")
    assert there.list_task_definitions()["taskDefinitionArns"] == [theirs["taskDefinitionArn"]]

    # Services of the same name in the same-named cluster of each region.
    here.create_service(cluster="shared", serviceName="api", taskDefinition="web", desiredCount=0)
    assert there.list_services(cluster="shared")["serviceArns"] == []
    there.create_service(cluster="shared", serviceName="api", taskDefinition="web", desiredCount=0)
    mine = here.describe_services(cluster="shared", services=["api"])["services"][0]
    assert mine["taskDefinition"].endswith("task-definition/web:2") and f":{REGION}:" in mine["serviceArn"]
    theirs_svc = there.describe_services(cluster="shared", services=["api"])["services"][0]
    assert f":{OTHER}:" in theirs_svc["serviceArn"]
    gone = here.describe_services(cluster="shared", services=[theirs_svc["serviceArn"]])
    assert gone["services"] == [] and gone["failures"][0]["reason"] == "MISSING"

    there.deregister_task_definition(taskDefinition="web:1")
    assert here.describe_task_definition(taskDefinition="web:1")["taskDefinition"]["status"] == "ACTIVE"

    # Account settings are the region's.
    there.put_account_setting(name="containerInsights", value="enabled")
    assert [s["value"] for s in there.list_account_settings(name="containerInsights")["settings"]] == ["enabled"]
    assert here.list_account_settings(name="containerInsights")["settings"] == []
    assert there.create_cluster(clusterName="insightful")["cluster"]["settings"] == [
        {"name": "containerInsights", "value": "enabled"}]
    assert here.create_cluster(clusterName="insightful")["cluster"]["settings"] == [
        {"name": "containerInsights", "value": "disabled"}]

    # Log groups too.
    client(wharf, REGION, "logs").create_log_group(logGroupName="/ecs/web")
    client(wharf, OTHER, "logs").create_log_group(logGroupName="/ecs/web")
    assert [g["arn"] for g in client(wharf, OTHER, "logs").describe_log_groups()["logGroups"]] == [
        f"arn:aws:logs:{OTHER}:000000000000:log-group:/ecs/web:*"]

    # Load balancers and target groups: the same names in each region.
    elbs = {r: client(wharf, r, "elbv2") for r in (REGION, OTHER)}
    made = {}
    for r, elb in elbs.items():
        lb = elb.create_load_balancer(Name="web", Subnets=["subnet-a"])["LoadBalancers"][0]
        tg = elb.create_target_group(Name="web", Protocol="HTTP", Port=80, VpcId="vpc-1")["TargetGroups"][0]
        assert f":{r}:" in lb["LoadBalancerArn"] and f":{r}:" in tg["TargetGroupArn"]
        made[r] = (lb["LoadBalancerArn"], tg["TargetGroupArn"])
    for r, elb in elbs.items():
        assert [l["LoadBalancerArn"] for l in elb.describe_load_balancers()["LoadBalancers"]] == [made[r][0]]
        assert [t["TargetGroupArn"] for t in elb.describe_target_groups(Names=["web"])["TargetGroups"]] == [made[r][1]]
    with pytest.raises(ClientError) as e:
        elbs[REGION].describe_load_balancers(LoadBalancerArns=[made[OTHER][0]])
    assert e.value.response["Error"]["Code"] == "LoadBalancerNotFound"
    with pytest.raises(ClientError) as e:
        elbs[REGION].describe_tags(ResourceArns=[made[OTHER][1]])
    assert e.value.response["Error"]["Code"] == "TargetGroupNotFound"
    elbs[OTHER].delete_load_balancer(LoadBalancerArn=made[OTHER][0])
    assert len(elbs[REGION].describe_load_balancers()["LoadBalancers"]) == 1
    # An ECS service cannot name another region's target group.
    msg = refused(lambda: here.create_service(
        cluster="shared", serviceName="lb", taskDefinition="web", desiredCount=0,
        loadBalancers=[{"targetGroupArn": made[OTHER][1], "containerName": "app", "containerPort": 80}]),
        "InvalidParameterException")
    assert "does not exist" in msg, msg

    # A region's name is a key segment: anything else is refused at the
    # signature (boto3 would not send it; a hand-signed request does).
    body = "{}"
    req = botocore.awsrequest.AWSRequest(method="POST", url=wharf.url + "/", data=body, headers={
        "X-Amz-Target": "AmazonEC2ContainerServiceV20141113.ListClusters",
        "Content-Type": "application/x-amz-json-1.1"})
    botocore.auth.SigV4Auth(botocore.credentials.Credentials(KEY, SECRET), "ecs", "Eu_West").add_auth(req)
    prepared = req.prepare()
    r = urllib.request.Request(prepared.url, data=body.encode(), headers=dict(prepared.headers), method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(r, timeout=10)
    assert e.value.code == 400
    assert json.loads(e.value.read())["__type"] == "InvalidSignatureException"


def test_agent_credentials_work_in_their_own_region(wharf):
    # An agent that signs for another region than its token's is told so at
    # the join, and nothing is minted.
    token = wharf.create_token()
    body = json.dumps({"token": token["token"], "region": OTHER}).encode()
    r = urllib.request.Request(wharf.url + "/", data=body, method="POST", headers={
        "X-Amz-Target": "WharfAgent_v1.Join", "Content-Type": "application/x-amz-json-1.1"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(r, timeout=10)
    err = json.loads(e.value.read())
    assert err["__type"] == "InvalidParameterException" and f"--region {REGION}" in err["message"], err
    listed = wharf.signed_call("WharfAdmin_v1.ListJoinTokens", {})["joinTokens"]
    assert [(t["tokenId"], t["region"], t["agents"]) for t in listed] == [(token["joinToken"]["tokenId"], REGION, 0)]

    creds = wharf.join(token["token"])
    agent_here = wharf.client_with(creds)
    agent_there = boto3.client("ecs", endpoint_url=wharf.url, region_name=OTHER,
                               aws_access_key_id=creds[0], aws_secret_access_key=creds[1])
    resources = [{"name": "CPU", "type": "INTEGER", "integerValue": 1024},
                 {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024}]
    msg = refused(lambda: agent_there.register_container_instance(totalResources=resources), "AccessDeniedException")
    assert f"region {REGION}" in msg and f"--region {REGION}" in msg, msg
    arn = agent_here.register_container_instance(totalResources=resources)["containerInstance"]["containerInstanceArn"]
    assert f":{REGION}:" in arn
    here, there = client(wharf, REGION), client(wharf, OTHER)
    assert here.list_container_instances()["containerInstanceArns"] == [arn]
    # The other region has no `default` cluster: nothing joined it there.
    refused(lambda: there.list_container_instances(), "ClusterNotFoundException")


def test_tasks_run_in_their_region_and_fargate_capacity_serves_every_region(wharf_up):
    here, there = wharf_up.client(), client(wharf_up, OTHER)
    # `wharf up`'s host joined `default` of the region it was started for.
    wait_instance(here)
    refused(lambda: there.list_container_instances(), "ClusterNotFoundException")
    for ecs in (here, there):
        ecs.register_task_definition(
            family="sleepy", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
            containerDefinitions=[{"name": "app", "image": IMAGE, "command": ["sleep", "600"], "stopTimeout": 1,
                                   "logConfiguration": {"logDriver": "awslogs", "options": {
                                       "awslogs-group": "/ecs/sleepy", "awslogs-stream-prefix": "s",
                                       "awslogs-create-group": "true"}}}])
    there.create_cluster(clusterName="default")
    net = {"awsvpcConfiguration": {"subnets": ["subnet-1"]}}
    # EC2 tasks need the region's own instances: the other region has none.
    msg = refused(lambda: there.run_task(taskDefinition="sleepy", launchType="EC2", networkConfiguration=net),
                  "InvalidParameterException")
    assert "No Container Instances" in msg, msg
    # FARGATE runs in both, on the managed capacity every region shares.
    runs = {name: ecs.run_task(taskDefinition="sleepy", launchType="FARGATE", networkConfiguration=net)["tasks"][0]
            for name, ecs in (("here", here), ("there", there))}
    assert f":{REGION}:" in runs["here"]["taskArn"] and f":{OTHER}:" in runs["there"]["taskArn"]
    for name, ecs in (("here", here), ("there", there)):
        arn = runs[name]["taskArn"]
        wait_for(lambda: ecs.describe_tasks(tasks=[arn])["tasks"][0]["lastStatus"] == "RUNNING", f"the {name} task")
        assert ecs.list_tasks()["taskArns"] == [arn]
    # Neither region sees the other's task, by ID or by ARN.
    theirs = runs["there"]["taskArn"]
    missing = here.describe_tasks(tasks=[theirs, theirs.rsplit("/", 1)[1]])
    assert missing["tasks"] == [] and {f["reason"] for f in missing["failures"]} == {"MISSING"}
    refused(lambda: here.stop_task(task=theirs), "InvalidParameterException")
    # Each container's log group is its task's region's (no awslogs-region given).
    for region in (REGION, OTHER):
        logs = client(wharf_up, region, "logs")
        groups = wait_for(lambda: logs.describe_log_groups(logGroupNamePrefix="/ecs/sleepy")["logGroups"],
                          f"the {region} task's log group")
        streams = wait_for(lambda: logs.describe_log_streams(logGroupName="/ecs/sleepy")["logStreams"],
                           f"the {region} task's log stream")
        assert len(groups) == 1 and len(streams) == 1, (groups, streams)
    for name, ecs in (("here", here), ("there", there)):
        ecs.stop_task(task=runs[name]["taskArn"])
