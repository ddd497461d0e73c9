#!/usr/bin/env python3
"""What secrets cost: GetSecretValue and GetParameter (WithDecryption)
against ListClusters on the same server and client (each value is opened
from its sealed form on every read), and a task start with four secrets
against the same task without them (RunTask accepted -> RUNNING).

Starts `wharf server` and `wharf agent` as two processes; the IAM caller is
a user with a policy (so every read is judged, resource policy included).

    python3 bench/secrets.py [--calls 500] [--starts 7] [--binary PATH]
"""
import argparse
import json
import statistics
import subprocess
import tempfile
import time

import boto3

from benchlib import (IMAGE, KEY, SECRET, default_binary, env as bench_env, free_port, remove_containers,
                      start_agent, wait_healthy)

REGION = "us-east-1"
ACCOUNT = "000000000000"


def client(url, service, key=KEY, secret=SECRET):
    return boto3.client(service, endpoint_url=url, region_name=REGION,
                        aws_access_key_id=key, aws_secret_access_key=secret)


def timed(call, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    out.sort()
    return out[len(out) // 2], out[int(len(out) * 0.99) - 1]


def doc(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--starts", type=int, default=7)
    ap.add_argument("--binary", default=default_binary())
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = bench_env()
    server = subprocess.Popen([a.binary, "server", "--listen", f"127.0.0.1:{port}", "--data-dir", f"{tmp}/s"],
                              env=env, stderr=subprocess.DEVNULL)
    wait_healthy(url)
    agent = start_agent(a.binary, url, "bench", f"{tmp}/a", env, "--task-credentials-endpoint", "off", "--image-pull-behavior", "prefer-cached")
    try:
        iam, sm, ssm = client(url, "iam"), client(url, "secretsmanager"), client(url, "ssm")
        secret = sm.create_secret(Name="bench/db", SecretString='{"user":"u","password":"p"}')["ARN"]
        sm.put_resource_policy(SecretId="bench/db", ResourcePolicy=doc(
            {"Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/nobody"},
             "Action": "*", "Resource": "*"}))
        ssm.put_parameter(Name="/bench/token", Value="t" * 64, Type="SecureString")
        iam.create_user(UserName="reader")
        iam.put_user_policy(UserName="reader", PolicyName="p", PolicyDocument=doc(
            {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "ssm:GetParameter*", "ecs:ListClusters"],
             "Resource": "*"}))
        k = iam.create_access_key(UserName="reader")["AccessKey"]
        time.sleep(0.5)
        reader = {s: client(url, s, k["AccessKeyId"], k["SecretAccessKey"]) for s in ("ecs", "secretsmanager", "ssm")}
        for c in (lambda: reader["ecs"].list_clusters(), lambda: reader["secretsmanager"].get_secret_value(SecretId="bench/db")):
            c()
        base = timed(lambda: reader["ecs"].list_clusters(), a.calls)
        sec = timed(lambda: reader["secretsmanager"].get_secret_value(SecretId="bench/db"), a.calls)
        par = timed(lambda: reader["ssm"].get_parameter(Name="/bench/token", WithDecryption=True), a.calls)
        print(f"{a.calls} calls each as an IAM user (p50 / p99):")
        print(f"  ListClusters (baseline)           {base[0] * 1e3:6.2f} / {base[1] * 1e3:6.2f} ms")
        print(f"  GetSecretValue (resource policy)  {sec[0] * 1e3:6.2f} / {sec[1] * 1e3:6.2f} ms  "
              f"({sec[0] / base[0]:.2f}x the baseline's p50)")
        print(f"  GetParameter WithDecryption       {par[0] * 1e3:6.2f} / {par[1] * 1e3:6.2f} ms  "
              f"({par[0] / base[0]:.2f}x)")

        ecs = client(url, "ecs")
        ecs.create_cluster(clusterName="bench")
        while not ecs.list_container_instances(cluster="bench")["containerInstanceArns"]:
            time.sleep(0.1)
        trust = doc({"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"})
        role = iam.create_role(RoleName="exec", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
        iam.put_role_policy(RoleName="exec", PolicyName="read", PolicyDocument=doc(
            {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "ssm:GetParameters"], "Resource": "*"}))
        container = {"name": "sleep", "image": IMAGE, "memory": 8, "stopTimeout": 1, "command": ["sleep", "3600"]}
        ecs.register_task_definition(family="plain", containerDefinitions=[container])
        ecs.register_task_definition(family="secrets", executionRoleArn=role, containerDefinitions=[dict(
            container, secrets=[
                {"name": "PASSWORD", "valueFrom": f"{secret}:password::"},
                {"name": "DB", "valueFrom": secret},
                {"name": "TOKEN", "valueFrom": "/bench/token"},
                {"name": "TOKEN_ARN", "valueFrom": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/bench/token"}])])
        starts = {"plain": [], "secrets": []}
        for _ in range(a.starts):
            for family in ("plain", "secrets"):
                t0 = time.perf_counter()
                arn = ecs.run_task(cluster="bench", taskDefinition=family)["tasks"][0]["taskArn"]
                while True:
                    t = ecs.describe_tasks(cluster="bench", tasks=[arn])["tasks"][0]
                    if t["lastStatus"] in ("RUNNING", "STOPPED"):
                        break
                    time.sleep(0.005)
                assert t["lastStatus"] == "RUNNING", t.get("stoppedReason")
                starts[family].append(time.perf_counter() - t0)
                ecs.stop_task(cluster="bench", task=arn)
        p, s = statistics.median(starts["plain"]), statistics.median(starts["secrets"])
        print(f"start latency (median of {a.starts}): plain {p * 1e3:.0f} ms, with 4 secrets {s * 1e3:.0f} ms "
              f"(+{(s - p) * 1e3:.0f} ms)")
    finally:
        agent.kill()
        server.kill()
        remove_containers("com.amazonaws.ecs.cluster=bench")


if __name__ == "__main__":
    main()
