"""The awslogs driver: a real container's output read back through the
CloudWatch Logs API (boto3, the aws CLI, `wharf logs`), across a restart."""
import json
import os
import subprocess
import time

from conftest import BINARY, KEY, REGION, SECRET
from test_docker import wait_instance

IMAGE = "wharf-test/busybox:latest"


def talker(ecs, family, command, create_group="true", group="/ecs/talk"):
    ecs.register_task_definition(family=family, containerDefinitions=[{
        "name": "app", "image": IMAGE, "memory": 16, "stopTimeout": 1, "command": ["sh", "-c", command],
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": group, "awslogs-stream-prefix": "talk", "awslogs-region": REGION,
            "awslogs-create-group": create_group}}}])


def events(logs, group, stream, want, timeout=30):
    deadline = time.time() + timeout
    while True:
        got = [e["message"] for page in logs.get_paginator("filter_log_events").paginate(
            logGroupName=group, logStreamNames=[stream]) for e in page["events"]]
        if len(got) >= want or time.time() > deadline:
            return got
        time.sleep(0.3)


def test_container_output_reaches_the_logs_api(wharf_up):
    ecs, logs = wharf_up.client(), wharf_up.client("logs")
    wait_instance(ecs)
    talker(ecs, "talk", 'for i in $(seq 1 50); do echo "out $i"; echo "err $i" >&2; done; '
                        'echo \'{"level":"error","n":7}\'; exec sleep 600')
    arn = ecs.run_task(taskDefinition="talk")["tasks"][0]["taskArn"]
    ecs.get_waiter("tasks_running").wait(tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    task_id = arn.rsplit("/", 1)[1]
    stream = f"talk/app/{task_id}"
    got = events(logs, "/ecs/talk", stream, 101)
    assert len(got) == 101, got[-5:]
    assert [m for m in got if m.startswith("out ")] == [f"out {i}" for i in range(1, 51)]
    assert [m for m in got if m.startswith("err ")] == [f"err {i}" for i in range(1, 51)]
    streams = logs.describe_log_streams(logGroupName="/ecs/talk")["logStreams"]
    assert [s["logStreamName"] for s in streams] == [stream]
    # Filter patterns, through boto3 and the aws CLI.
    errs = logs.filter_log_events(logGroupName="/ecs/talk", filterPattern="err -level")["events"]
    assert len(errs) == 50
    js = logs.filter_log_events(logGroupName="/ecs/talk", filterPattern='{ $.level = "error" }')["events"]
    assert [json.loads(e["message"])["n"] for e in js] == [7]
    env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION=REGION)
    out = subprocess.run(["aws", "--endpoint-url", wharf_up.url, "logs", "get-log-events", "--log-group-name",
                          "/ecs/talk", "--log-stream-name", stream, "--start-from-head", "--limit", "3"],
                         env=env, capture_output=True, text=True, check=True)
    assert [e["message"] for e in json.loads(out.stdout)["events"]] == got[:3]
    # `wharf logs` reads the same through the API; `-f` follows until the task stops.
    wenv = dict(env, WHARF_SERVER=wharf_up.url, WHARF_ACCESS_KEY_ID=KEY, WHARF_SECRET_ACCESS_KEY=SECRET)
    out = subprocess.run([BINARY, "logs", task_id], env=wenv, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == got
    follower = subprocess.Popen([BINARY, "logs", "-f", "--container", "app", task_id], env=wenv,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    assert follower.poll() is None, "still following a running task"
    ecs.stop_task(task=arn)
    stdout, stderr = follower.communicate(timeout=60)
    assert follower.returncode == 0, stderr
    assert stdout.splitlines() == got


def test_no_line_lost_or_repeated_across_a_restart(wharf_up):
    ecs, logs = wharf_up.client(), wharf_up.client("logs")
    wait_instance(ecs)
    talker(ecs, "ticker", 'i=0; while [ $i -lt 60 ]; do i=$((i+1)); echo "tick $i"; sleep 0.1; done; exec sleep 600')
    arn = ecs.run_task(taskDefinition="ticker")["tasks"][0]["taskArn"]
    ecs.get_waiter("tasks_running").wait(tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    stream = f"talk/app/{arn.rsplit('/', 1)[1]}"
    events(logs, "/ecs/talk", stream, 10)
    wharf_up.kill()  # SIGKILL, mid-stream
    time.sleep(1)
    wharf_up.start()
    logs = wharf_up.client("logs")
    got = events(logs, "/ecs/talk", stream, 60)
    time.sleep(2)
    got = events(logs, "/ecs/talk", stream, 60)
    assert got == [f"tick {i}" for i in range(1, 61)], got
    wharf_up.client().stop_task(task=arn)


def test_missing_group_fails_the_start(wharf_up):
    ecs = wharf_up.client()
    wait_instance(ecs)
    talker(ecs, "nogroup", "echo hi; exec sleep 600", create_group="false", group="/ecs/absent")
    arn = ecs.run_task(taskDefinition="nogroup")["tasks"][0]["taskArn"]
    ecs.get_waiter("tasks_stopped").wait(tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    t = ecs.describe_tasks(tasks=[arn])["tasks"][0]
    assert t["stopCode"] == "TaskFailedToStart"
    assert t["stoppedReason"].startswith("ResourceInitializationError: failed to validate logger args")
    assert "The specified log group does not exist." in t["stoppedReason"], t["stoppedReason"]
