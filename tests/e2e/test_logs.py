"""The CloudWatch Logs API through boto3 and the aws CLI against the real binary."""
import json
import os
import subprocess
import time

import botocore.exceptions
import pytest

from conftest import KEY, REGION, SECRET


def now_ms():
    return int(time.time() * 1000)


@pytest.fixture
def logs(wharf):
    return wharf.client("logs")


def put(logs, group, stream, events):
    return logs.put_log_events(logGroupName=group, logStreamName=stream,
                               logEvents=[{"timestamp": t, "message": m} for t, m in events])


def error(excinfo):
    e = excinfo.value.response
    return e["Error"]["Code"], e["Error"]["Message"], e["ResponseMetadata"]["HTTPStatusCode"]


def test_put_and_get_with_forward_and_backward_paging(logs):
    logs.create_log_group(logGroupName="/ecs/web")
    logs.create_log_stream(logGroupName="/ecs/web", logStreamName="app/1")
    t0 = now_ms() - 60_000
    out = put(logs, "/ecs/web", "app/1", [(t0 + i // 3, f"line {i}") for i in range(25)])
    assert "rejectedLogEventsInfo" not in out
    want = [f"line {i}" for i in range(25)]

    r = logs.get_log_events(logGroupName="/ecs/web", logStreamName="app/1", startFromHead=True, limit=10)
    got = [e["message"] for e in r["events"]]
    while True:
        token = r["nextForwardToken"]
        assert token.startswith("f/")
        r = logs.get_log_events(logGroupName="/ecs/web", logStreamName="app/1", nextToken=token, limit=10)
        if not r["events"]:
            assert r["nextForwardToken"] == token  # the end: the same token again
            break
        got += [e["message"] for e in r["events"]]
    assert got == want

    r = logs.get_log_events(logGroupName="/ecs/web", logStreamName="app/1", limit=10)  # from the tail
    back = [e["message"] for e in r["events"]]
    assert back == want[-10:]
    while True:
        r = logs.get_log_events(logGroupName="/ecs/web", logStreamName="app/1",
                                nextToken=r["nextBackwardToken"], limit=10)
        if not r["events"]:
            break
        back = [e["message"] for e in r["events"]] + back
    assert back == want
    e = r["events"] or logs.get_log_events(logGroupName="/ecs/web", logStreamName="app/1", limit=1)["events"]
    assert e[0]["ingestionTime"] >= e[0]["timestamp"]


def test_filter_paginator_interleaves_three_streams(logs):
    logs.create_log_group(logGroupName="svc")
    t0 = now_ms() - 3_600_000
    expected = []
    for s in ["a", "b", "c"]:
        logs.create_log_stream(logGroupName="svc", logStreamName=s)
    for s in ["a", "b", "c"]:
        events = []
        for i in range(40):
            level = "ERROR" if i % 4 == 0 else "INFO"
            msg = json.dumps({"level": level, "stream": s, "i": i, "latency": i * 10})
            events.append((t0 + i // 2, msg))  # equal timestamps within and across streams
        put(logs, "svc", s, events)
    pages = logs.get_paginator("filter_log_events").paginate(
        logGroupName="svc", filterPattern="ERROR", PaginationConfig={"PageSize": 7})
    got = [e for page in pages for e in page["events"]]
    assert len(got) == 30
    assert len({e["eventId"] for e in got}) == 30
    assert [e["timestamp"] for e in got] == sorted(e["timestamp"] for e in got)
    assert {e["logStreamName"] for e in got[:3]} == {"a", "b", "c"}  # interleaved, not stream by stream
    assert all(json.loads(e["message"])["level"] == "ERROR" for e in got)

    r = logs.filter_log_events(logGroupName="svc", logStreamNames=["b"],
                               filterPattern='{ $.level = "INFO" && $.latency > 300 }')
    assert [json.loads(e["message"])["i"] for e in r["events"]] == [31, 33, 34, 35, 37, 38, 39]
    r = logs.filter_log_events(logGroupName="svc", logStreamNamePrefix="c", startTime=t0 + 5, endTime=t0 + 6,
                               filterPattern="?ERROR ?nothing")
    assert [json.loads(e["message"])["i"] for e in r["events"]] == [12]
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        logs.filter_log_events(logGroupName="svc", filterPattern="{ $.level = ")
    assert error(ei)[:2] == ("InvalidParameterException", "Invalid filter pattern")


def test_describe_log_streams_ordering_and_paging(logs):
    logs.create_log_group(logGroupName="g")
    t0 = now_ms() - 10_000
    for name, dt in [("s1", 3), ("s2", 1), ("s3", 2)]:
        logs.create_log_stream(logGroupName="g", logStreamName=name)
        put(logs, "g", name, [(t0 + dt, "x")])
    by_time = logs.describe_log_streams(logGroupName="g", orderBy="LastEventTime", descending=True)
    assert [s["logStreamName"] for s in by_time["logStreams"]] == ["s1", "s3", "s2"]
    assert by_time["logStreams"][0]["lastEventTimestamp"] == t0 + 3
    pages = logs.get_paginator("describe_log_streams").paginate(logGroupName="g", PaginationConfig={"PageSize": 2})
    assert [s["logStreamName"] for p in pages for s in p["logStreams"]] == ["s1", "s2", "s3"]
    assert [s["logStreamName"] for s in logs.describe_log_streams(
        logGroupName="g", logStreamNamePrefix="s3")["logStreams"]] == ["s3"]
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        logs.describe_log_streams(logGroupName="g", orderBy="LastEventTime", logStreamNamePrefix="s")
    assert error(ei)[0] == "InvalidParameterException"


def test_retention_and_put_rules(logs):
    logs.create_log_group(logGroupName="r")
    logs.create_log_stream(logGroupName="r", logStreamName="s")
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        logs.put_retention_policy(logGroupName="r", retentionInDays=2)
    assert error(ei)[0] == "InvalidParameterException"
    logs.put_retention_policy(logGroupName="r", retentionInDays=1)
    assert logs.describe_log_groups(logGroupNamePrefix="r")["logGroups"][0]["retentionInDays"] == 1
    now = now_ms()
    out = put(logs, "r", "s", [(now - 86_400_000 - 60_000, "expired"), (now - 86_400_000 + 60_000, "kept")])
    assert out["rejectedLogEventsInfo"] == {"expiredLogEventEndIndex": 0}
    out = put(logs, "r", "s", [(now, "kept too"), (now + 3 * 3_600_000, "too new")])
    assert out["rejectedLogEventsInfo"] == {"tooNewLogEventStartIndex": 1}
    msgs = [e["message"] for e in logs.get_log_events(logGroupName="r", logStreamName="s")["events"]]
    assert msgs == ["kept", "kept too"]
    logs.delete_retention_policy(logGroupName="r")
    assert "retentionInDays" not in logs.describe_log_groups(logGroupNamePrefix="r")["logGroups"][0]
    out = put(logs, "r", "s", [(now - 14 * 86_400_000 - 60_000, "too old"), (now - 14 * 86_400_000 + 60_000, "ok")])
    assert out["rejectedLogEventsInfo"] == {"tooOldLogEventEndIndex": 0}
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        put(logs, "r", "s", [(now, "b"), (now - 1, "a")])
    assert error(ei)[0] == "InvalidParameterException"
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        put(logs, "r", "s", [(now, "x" * 600_000), (now, "y" * 600_000)])
    assert error(ei)[0] == "InvalidParameterException"


def test_error_shapes_and_tags(wharf, logs):
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        logs.create_log_stream(logGroupName="missing", logStreamName="s")
    assert error(ei) == ("ResourceNotFoundException", "The specified log group does not exist.", 400)
    logs.create_log_group(logGroupName="t", tags={"team": "core"})
    with pytest.raises(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName="t")
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        put(logs, "t", "nope", [(now_ms(), "x")])
    assert error(ei) == ("ResourceNotFoundException", "The specified log stream does not exist.", 400)
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        logs.describe_metric_filters(logGroupName="t")
    assert error(ei)[0] == "InvalidOperationException"

    group = logs.describe_log_groups(logGroupNamePrefix="t")["logGroups"][0]
    arn = f"arn:aws:logs:{REGION}:000000000000:log-group:t"
    assert group["arn"] == arn + ":*"
    assert group["logGroupArn"] == arn
    logs.tag_resource(resourceArn=arn, tags={"env": "dev"})
    logs.untag_resource(resourceArn=arn, tagKeys=["team"])
    assert logs.list_tags_for_resource(resourceArn=arn)["tags"] == {"env": "dev"}
    assert logs.list_tags_log_group(logGroupName="t")["tags"] == {"env": "dev"}
    logs.delete_log_group(logGroupName="t")
    with pytest.raises(logs.exceptions.ResourceNotFoundException):
        logs.list_tags_for_resource(resourceArn=arn)
    # ECS is still served on the same endpoint
    assert wharf.client("ecs").list_clusters()["clusterArns"] == []


def test_aws_cli(wharf):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION=REGION)

    def aws(*args):
        out = subprocess.run(["aws", "--endpoint-url", wharf.url, "logs", *args], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else None

    aws("create-log-group", "--log-group-name", "cli")
    aws("create-log-stream", "--log-group-name", "cli", "--log-stream-name", "one")
    now = now_ms()
    events = json.dumps([{"timestamp": now + i, "message": m} for i, m in enumerate(["start", "ERROR boom", "done"])])
    assert "nextSequenceToken" in aws("put-log-events", "--log-group-name", "cli", "--log-stream-name", "one",
                                      "--log-events", events)
    got = aws("get-log-events", "--log-group-name", "cli", "--log-stream-name", "one", "--start-from-head")
    assert [e["message"] for e in got["events"]] == ["start", "ERROR boom", "done"]
    found = aws("filter-log-events", "--log-group-name", "cli", "--filter-pattern", "ERROR")
    assert [e["message"] for e in found["events"]] == ["ERROR boom"]
    groups = aws("describe-log-groups")["logGroups"]
    assert [g["logGroupName"] for g in groups] == ["cli"]
    assert groups[0]["storedBytes"] == len("start") + len("ERROR boom") + len("done")
    out = subprocess.run(["aws", "--endpoint-url", wharf.url, "logs", "create-log-group", "--log-group-name", "cli"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "ResourceAlreadyExistsException" in out.stderr


def test_events_survive_kill_9(wharf):
    logs = wharf.client("logs")
    logs.create_log_group(logGroupName="durable")
    for s in ["a", "b"]:
        logs.create_log_stream(logGroupName="durable", logStreamName=s)
    t0 = now_ms() - 600_000
    for batch in range(20):
        for s in ["a", "b"]:
            put(logs, "durable", s, [(t0 + batch * 100 + i, f"{s}-{batch}-{i}") for i in range(100)])
    wharf.kill()  # SIGKILL: no clean shutdown
    wharf.start()
    logs = wharf.client("logs")
    pages = logs.get_paginator("filter_log_events").paginate(logGroupName="durable")
    got = [e["message"] for p in pages for e in p["events"]]
    assert len(got) == 4000
    assert sorted(got) == sorted(f"{s}-{b}-{i}" for s in "ab" for b in range(20) for i in range(100))
    stream = logs.describe_log_streams(logGroupName="durable", logStreamNamePrefix="a")["logStreams"][0]
    assert stream["lastEventTimestamp"] == t0 + 19 * 100 + 99
