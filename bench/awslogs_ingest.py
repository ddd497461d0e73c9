#!/usr/bin/env python3
"""End-to-end awslogs ingest: a container writes N lines as fast as it can;
how long until the last one is readable through the Logs API (container
stdout -> Docker -> agent -> PutLogEvents -> log store)?

    python3 bench/awslogs_ingest.py [--lines 200000] [--binary PATH]
"""
import argparse
import subprocess
import tempfile
import time

import boto3

from benchlib import KEY, SECRET, default_binary, env as bench_env, free_port, remove_containers, wait_healthy


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--binary", default=default_binary())
    a = ap.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = bench_env()
    proc = subprocess.Popen([a.binary, "up", "--listen", f"127.0.0.1:{port}", "--data-dir", tempfile.mkdtemp()],
                            env=env, stderr=subprocess.DEVNULL)
    kw = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id=KEY, aws_secret_access_key=SECRET)
    try:
        wait_healthy(url)
        ecs, logs = boto3.client("ecs", **kw), boto3.client("logs", **kw)
        while not ecs.list_container_instances()["containerInstanceArns"]:
            time.sleep(0.1)
        ecs.register_task_definition(family="firehose", containerDefinitions=[{
            "name": "app", "image": "wharf-test/busybox:latest", "memory": 64, "stopTimeout": 1,
            "command": ["sh", "-c", f"seq 1 {a.lines}; exec sleep 600"],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": "/bench", "awslogs-stream-prefix": "b", "awslogs-create-group": "true"}}}])
        t0 = time.perf_counter()
        arn = ecs.run_task(taskDefinition="firehose")["tasks"][0]["taskArn"]
        stream = f"b/app/{arn.rsplit('/', 1)[1]}"
        last = None
        while last != str(a.lines):
            time.sleep(0.05)
            try:
                ev = logs.get_log_events(logGroupName="/bench", logStreamName=stream, limit=1)["events"]
            except logs.exceptions.ResourceNotFoundException:
                continue
            last = ev[-1]["message"] if ev else None
        took = time.perf_counter() - t0
        stored = logs.describe_log_streams(logGroupName="/bench")["logStreams"][0]
        print(f"awslogs end to end: {a.lines} lines in {took:.2f} s from RunTask = {a.lines / took:,.0f} lines/s "
              f"(target >= 100,000 lines/s); stream {stored['logStreamName']}")
        ecs.stop_task(task=arn)
    finally:
        proc.kill()
        remove_containers("com.amazonaws.ecs.task-definition-family=firehose")


if __name__ == "__main__":
    main()
