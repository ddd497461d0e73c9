"""Blue/green service deployments (the BLUE_GREEN strategy) behind a real
listener: green starts in full beside blue, takes the test listener's
traffic, waits at a PAUSE hook for ContinueServiceDeployment (through the
aws CLI), then takes production; a second deployment rolls back at its hook
and blue serves on. Production requests never fail."""
import json
import os
import subprocess
import time

import pytest
from botocore.exceptions import ClientError

from conftest import KEY, REGION, SECRET, free_port
from test_docker import wait_instance
from test_load_balancer import IMAGE, Load, fast_group, forward, get, stable, wait_for


def version_task(ecs, version):
    """Serves its version at `/`."""
    return ecs.register_task_definition(family="bg", containerDefinitions=[{
        "name": "web", "image": IMAGE, "memory": 32, "stopTimeout": 2,
        "portMappings": [{"containerPort": 80, "hostPort": 0}],
        "command": ["sh", "-c", f"mkdir -p /www; echo {version} > /www/index.html; exec httpd -f -p 80 -h /www"],
    }])["taskDefinition"]["taskDefinitionArn"]


def answers(port, n=12):
    """What `n` requests to the listener got back."""
    return {get(port)[2].strip().decode() for _ in range(n)}


def current_deployment(ecs, service):
    arns = [d["serviceDeploymentArn"] for d in
            ecs.list_service_deployments(service=service)["serviceDeployments"]]
    return ecs.describe_service_deployments(serviceDeploymentArns=arns[:1])["serviceDeployments"][0]


def awaiting_hook(ecs, service):
    d = current_deployment(ecs, service)
    hooks = [h for h in d.get("lifecycleHookDetails", []) if h["status"] == "AWAITING_ACTION"]
    return (d, hooks[0]) if hooks else None


def versions_running(ecs, service):
    tasks = ecs.list_tasks(serviceName=service)["taskArns"]
    if not tasks:
        return []
    return sorted(t["taskDefinitionArn"].rsplit(":", 1)[1] for t in ecs.describe_tasks(tasks=tasks)["tasks"]
                  if t["lastStatus"] == "RUNNING" and t["desiredStatus"] == "RUNNING")


def aws(url, *args):
    out = subprocess.run(["aws", "--endpoint-url", url, "--region", REGION, "--output", "json", *args],
                         env=dict(os.environ, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def weights(elb, listener):
    rules = elb.describe_rules(ListenerArn=listener)["Rules"]
    action = [r for r in rules if r["IsDefault"]][0]["Actions"][0]
    return {t["TargetGroupArn"]: t["Weight"] for t in action["ForwardConfig"]["TargetGroups"]}


def test_blue_green_shifts_test_then_production_traffic_and_rolls_back_at_a_hook(wharf_up):
    ecs, elb = wharf_up.client(), wharf_up.client("elbv2")
    wait_instance(ecs)
    lb = elb.create_load_balancer(Name="bg", Subnets=["subnet-a"])["LoadBalancers"][0]
    blue, green = (fast_group(elb, name, 80, target_type="instance") for name in ("bg-blue", "bg-green"))
    for tg in (blue, green):
        elb.modify_target_group_attributes(TargetGroupArn=tg, Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": "3"}])
    prod_port, test_port = free_port(), free_port()
    prod, test = (elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=port,
                                      DefaultActions=forward(blue))["Listeners"][0]["ListenerArn"]
                  for port in (prod_port, test_port))
    # The listeners' default rules are the rules ECS shifts.
    prod_rule, test_rule = ([r["RuleArn"] for r in elb.describe_rules(ListenerArn=l)["Rules"] if r["IsDefault"]][0]
                            for l in (prod, test))
    hook = {"targetType": "PAUSE", "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
            "timeoutConfiguration": {"timeoutInMinutes": 30, "action": "ROLLBACK"}}
    ecs.create_service(
        serviceName="bg", taskDefinition=version_task(ecs, "v1"), desiredCount=2,
        deploymentConfiguration={"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 0, "lifecycleHooks": [hook]},
        loadBalancers=[{"targetGroupArn": blue, "containerName": "web", "containerPort": 80,
                        "advancedConfiguration": {"alternateTargetGroupArn": green,
                                                  "productionListenerRule": prod_rule,
                                                  "testListenerRule": test_rule}}])
    stable(ecs, "bg")
    svc = ecs.describe_services(services=["bg"])["services"][0]
    cfg = svc["deploymentConfiguration"]
    assert cfg["strategy"] == "BLUE_GREEN" and cfg["bakeTimeInMinutes"] == 0 and cfg["lifecycleHooks"] == [hook], cfg
    # The first deployment has no blue: it rolls out through its stages
    # without pausing. Both rules now name both groups of the pair.
    wait_for(lambda: current_deployment(ecs, "bg")["status"] == "SUCCESSFUL", "the first deployment")
    assert weights(elb, prod) == {blue: 100, green: 0}
    wait_for(lambda: answers(prod_port) == {"v1"} and answers(test_port) == {"v1"}, "v1 on both listeners")

    load = Load(prod_port, ["/"], workers=2)
    load.start()
    try:
        load.mark("v2")
        ecs.update_service(service="bg", taskDefinition=version_task(ecs, "v2"))
        d, h = wait_for(lambda: awaiting_hook(ecs, "bg"), "the pause after the test traffic shift", timeout=120)
        assert d["status"] == "IN_PROGRESS" and d["lifecycleStage"] == "POST_TEST_TRAFFIC_SHIFT", d
        assert h["targetType"] == "PAUSE" and h["timeoutAction"] == "ROLLBACK" and h["hookId"].startswith("ecs-pause-")
        # Green runs in full beside blue: test traffic reaches green only,
        # production blue only.
        assert versions_running(ecs, "bg") == ["1", "1", "2", "2"]
        assert answers(test_port) == {"v2"}
        assert answers(prod_port) == {"v1"}
        assert weights(elb, test) == {green: 100, blue: 0}
        targets = elb.describe_target_health(TargetGroupArn=green)["TargetHealthDescriptions"]
        assert [t["TargetHealth"]["State"] for t in targets] == ["healthy", "healthy"], targets

        with pytest.raises(ClientError) as e:
            ecs.continue_service_deployment(serviceDeploymentArn=d["serviceDeploymentArn"], hookId="ecs-pause-x")
        assert e.value.response["Error"]["Code"] == "InvalidParameterException"
        # Continue through the aws CLI.
        out = aws(wharf_up.url, "ecs", "continue-service-deployment", "--service-deployment-arn",
                  d["serviceDeploymentArn"], "--hook-id", h["hookId"], "--action", "CONTINUE")
        assert out["serviceDeploymentArn"] == d["serviceDeploymentArn"]
        wait_for(lambda: current_deployment(ecs, "bg")["status"] == "SUCCESSFUL", "v2 to succeed", timeout=120)
        assert answers(prod_port) == {"v2"}
        assert weights(elb, prod) == {green: 100, blue: 0}
        wait_for(lambda: versions_running(ecs, "bg") == ["2", "2"], "blue to be cleaned up")
        done = current_deployment(ecs, "bg")
        assert done["lifecycleStage"] == "CLEAN_UP"
        assert [k["status"] for k in done["lifecycleHookDetails"]] == ["SUCCEEDED"]

        # v3 rolls back at its hook: test traffic returns to v2, v3 stops.
        load.mark("v3")
        ecs.update_service(service="bg", taskDefinition=version_task(ecs, "v3"))
        d, h = wait_for(lambda: awaiting_hook(ecs, "bg"), "v3's pause", timeout=120)
        assert answers(test_port) == {"v3"} and answers(prod_port) == {"v2"}
        # v3 registered with the group v2 left free: blue's.
        assert weights(elb, test) == {blue: 100, green: 0}
        ecs.continue_service_deployment(serviceDeploymentArn=d["serviceDeploymentArn"], hookId=h["hookId"],
                                        action="ROLLBACK")
        wait_for(lambda: current_deployment(ecs, "bg")["status"] == "ROLLBACK_SUCCESSFUL", "the rollback", timeout=120)
        assert answers(test_port) == {"v2"} and answers(prod_port) == {"v2"}
        wait_for(lambda: versions_running(ecs, "bg") == ["2", "2"], "v3 to stop")
        svc = ecs.describe_services(services=["bg"])["services"][0]
        assert svc["taskDefinition"].endswith(":2") and len(svc["deployments"]) == 1

        # CANARY: 30 % of production goes to v4 for the canary's minute,
        # then all of it.
        load.mark("v4")
        canary = {"strategy": "CANARY", "canaryConfiguration": {"canaryPercent": 30, "canaryBakeTimeInMinutes": 1},
                  "lifecycleHooks": []}
        ecs.update_service(service="bg", taskDefinition=version_task(ecs, "v4"), deploymentConfiguration=canary)
        cfg = ecs.describe_services(services=["bg"])["services"][0]["deploymentConfiguration"]
        assert cfg["strategy"] == "CANARY" and cfg["canaryConfiguration"] == canary["canaryConfiguration"], cfg
        wait_for(lambda: current_deployment(ecs, "bg").get("lifecycleStage") == "PRODUCTION_TRAFFIC_SHIFT",
                 "the canary step", timeout=120)
        # v4 registered with the group v2 does not use (blue's): 300 of 999.
        split = weights(elb, prod)
        assert split == {blue: 300, green: 699}, split
        got = [get(prod_port)[2].strip().decode() for _ in range(300)]
        assert set(got) == {"v2", "v4"}, set(got)
        share = got.count("v4") / len(got)
        assert 0.18 <= share <= 0.42, share
        wait_for(lambda: current_deployment(ecs, "bg")["status"] == "SUCCESSFUL", "the canary to finish", timeout=150)
        assert answers(prod_port) == {"v4"}
        wait_for(lambda: versions_running(ecs, "bg") == ["4", "4"], "v2 to be cleaned up")
        # Back to ROLLING only onto the group production reaches (blue's now).
        for balancers, message in [
            (None, "advancedConfiguration applies"),
            ([{"targetGroupArn": green, "containerName": "web", "containerPort": 80}], "Production traffic goes to"),
        ]:
            with pytest.raises(ClientError) as e:
                ecs.update_service(service="bg", deploymentConfiguration={"strategy": "ROLLING"},
                                   **({"loadBalancers": balancers} if balancers else {}))
            assert message in e.value.response["Error"]["Message"], e.value.response["Error"]
        time.sleep(2)
    finally:
        load.stop()
    assert load.ok > 100, load.ok
    assert load.failures == [], (load.phases, load.failures[:5])


def test_blue_green_requests_are_checked(wharf):
    ecs, elb = wharf.client(), wharf.client("elbv2")
    ecs.create_cluster(clusterName="default")
    lb = elb.create_load_balancer(Name="chk", Subnets=["subnet-a"])["LoadBalancers"][0]
    blue, green = (fast_group(elb, name, 80, target_type="instance") for name in ("chk-blue", "chk-green"))
    listener = elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=free_port(),
                                   DefaultActions=forward(blue))["Listeners"][0]["ListenerArn"]
    rule = [r["RuleArn"] for r in elb.describe_rules(ListenerArn=listener)["Rules"]][0]
    td = version_task(ecs, "v1")
    lbs = lambda **adv: [{"targetGroupArn": blue, "containerName": "web", "containerPort": 80,  # noqa: E731
                          **({"advancedConfiguration": adv} if adv else {})}]
    bg = {"strategy": "BLUE_GREEN"}
    for cfg, balancers, message in [
        ({**bg, "lifecycleHooks": [{"lifecycleStages": ["PRE_SCALE_UP"], "hookTargetArn": "arn:aws:lambda:x"}]},
         lbs(alternateTargetGroupArn=green, productionListenerRule=rule), "AWS_LAMBDA"),
        ({**bg, "lifecycleHooks": [{"targetType": "PAUSE", "lifecycleStages": []}]},
         lbs(alternateTargetGroupArn=green, productionListenerRule=rule), "lifecycleStages"),
        ({**bg, "bakeTimeInMinutes": 1441}, lbs(alternateTargetGroupArn=green, productionListenerRule=rule),
         "bakeTimeInMinutes"),
        ({"strategy": "ROLLING", "bakeTimeInMinutes": 5}, lbs(), "BLUE_GREEN"),
        ({"strategy": "ROLLING"}, lbs(alternateTargetGroupArn=green, productionListenerRule=rule), "BLUE_GREEN"),
        (bg, lbs(), "advancedConfiguration"),
        (bg, lbs(alternateTargetGroupArn=blue, productionListenerRule=rule), "differ"),
        (bg, lbs(alternateTargetGroupArn=blue.replace("chk-blue", "nope"), productionListenerRule=rule),
         "does not exist"),
        (bg, lbs(alternateTargetGroupArn=green, productionListenerRule=rule + "0"), "productionListenerRule"),
        (bg, lbs(alternateTargetGroupArn=green), "productionListenerRule"),
        ({"strategy": "CANARY", "canaryConfiguration": {"canaryPercent": 0.05}},
         lbs(alternateTargetGroupArn=green, productionListenerRule=rule), "canaryPercent"),
        ({"strategy": "LINEAR", "linearConfiguration": {"stepPercent": 10.05}},
         lbs(alternateTargetGroupArn=green, productionListenerRule=rule), "stepPercent"),
        ({"strategy": "FOO"}, lbs(), "strategy FOO"),
        ({**bg, "lifecycleHooks": [{"targetType": "PAUSE", "lifecycleStages": ["CLEAN_UP"]}]},
         lbs(alternateTargetGroupArn=green, productionListenerRule=rule), "CLEAN_UP is not a lifecycle stage"),
        (bg, lbs(alternateTargetGroupArn=green, productionListenerRule=rule, testListenerRule=rule),
         "testListenerRule must differ"),
        ({**bg, "linearConfiguration": {"stepPercent": 10}},
         lbs(alternateTargetGroupArn=green, productionListenerRule=rule), "linearConfiguration applies"),
    ]:
        with pytest.raises(ClientError) as e:
            ecs.create_service(serviceName="chk", taskDefinition=td, desiredCount=1,
                               deploymentConfiguration=cfg, loadBalancers=balancers)
        err = e.value.response["Error"]
        # What Wharf lacks (Lambda, the canary strategy) is named as such.
        code = "UnsupportedFeatureException" if message == "AWS_LAMBDA" else "InvalidParameterException"
        assert err["Code"] == code and message in err["Message"], (cfg, err)
    assert ecs.list_services()["serviceArns"] == [], "a refused request writes nothing"
    # One service shifts a rule's traffic.
    ecs.create_service(serviceName="one", taskDefinition=td, desiredCount=0, deploymentConfiguration=bg,
                       loadBalancers=lbs(alternateTargetGroupArn=green, productionListenerRule=rule))
    with pytest.raises(ClientError) as e:
        ecs.create_service(serviceName="two", taskDefinition=td, desiredCount=0, deploymentConfiguration=bg,
                           loadBalancers=lbs(alternateTargetGroupArn=green, productionListenerRule=rule))
    assert "already shifts the traffic of service" in e.value.response["Error"]["Message"]
    # Its own update names its own rule.
    ecs.update_service(service="one", loadBalancers=lbs(alternateTargetGroupArn=green, productionListenerRule=rule))
    ecs.delete_service(service="one", force=True)
    with pytest.raises(ClientError) as e:
        ecs.continue_service_deployment(
            serviceDeploymentArn=f"arn:aws:ecs:{REGION}:000000000000:service-deployment/default/chk/123",
            hookId="ecs-pause-x")
    assert e.value.response["Error"]["Code"] == "ServiceDeploymentNotFoundException"
    # A rolling service has no hook to continue.
    ecs.create_service(serviceName="roll", taskDefinition=td, desiredCount=0)
    d = current_deployment(ecs, "roll")
    with pytest.raises(ClientError) as e:
        ecs.continue_service_deployment(serviceDeploymentArn=d["serviceDeploymentArn"], hookId="ecs-pause-x")
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
