"""ECS Exec: ExecuteCommand through boto3, and `wharf exec` running commands
in real containers through the control plane and the host's agent."""
import os
import pty
import select
import struct
import subprocess
import fcntl
import termios
import time

import pytest

from conftest import BINARY, KEY, SECRET, REGION, Wharf, wait_for


def wait_instance(ecs, cluster="default"):
    def connected():
        try:
            arns = ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
        except ecs.exceptions.ClusterNotFoundException:
            return None
        return arns and ecs.describe_container_instances(
            cluster=cluster, containerInstances=arns)["containerInstances"][0]["agentConnected"]
    wait_for(connected, "the agent to connect")


def run_exec_task(ecs, cluster="default", exec_enabled=True):
    ecs.register_task_definition(family="exec", containerDefinitions=[
        {"name": "app", "image": "wharf-test/busybox:latest", "memory": 32, "stopTimeout": 1,
         "command": ["sleep", "600"], "environment": [{"name": "GREETING", "value": "hello from app"}]},
        {"name": "side", "image": "wharf-test/busybox:latest", "memory": 16, "stopTimeout": 1,
         "command": ["sleep", "600"]}])
    arn = ecs.run_task(cluster=cluster, taskDefinition="exec",
                       enableExecuteCommand=exec_enabled)["tasks"][0]["taskArn"]
    ecs.get_waiter("tasks_running").wait(cluster=cluster, tasks=[arn],
                                          WaiterConfig={"Delay": 0.5, "MaxAttempts": 60})
    return arn


def container_id(task_arn, name):
    out = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.amazonaws.ecs.task-arn={task_arn}",
                          "--filter", f"label=com.amazonaws.ecs.container-name={name}"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert len(out) == 1, out
    return out[0]


def wharf_exec(w, *args, input=None, extra=()):
    env = dict(os.environ, WHARF_ACCESS_KEY_ID=KEY, WHARF_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION=REGION)
    return subprocess.run([BINARY, "exec", "--endpoint-url", w.url, *extra, *args], input=input,
                          capture_output=True, timeout=60, env=env)


def test_execute_command_as_ecs_answers_it(wharf_up):
    ecs = wharf_up.client()
    wait_instance(ecs)
    arn = run_exec_task(ecs)
    task = ecs.describe_tasks(tasks=[arn])["tasks"][0]
    assert task["enableExecuteCommand"] is True
    agents = task["containers"][0]["managedAgents"]
    assert agents[0]["name"] == "ExecuteCommandAgent" and agents[0]["lastStatus"] == "RUNNING"

    r = ecs.execute_command(task=arn, container="app", command="/bin/sh", interactive=True)
    assert r["taskArn"] == arn and r["containerName"] == "app" and r["interactive"] is True
    assert r["containerArn"] == next(c["containerArn"] for c in task["containers"] if c["name"] == "app")
    session = r["session"]
    assert session["streamUrl"] == f"ws://127.0.0.1:{wharf_up.port}/wharf/exec/{session['sessionId']}"
    assert len(session["tokenValue"]) == 64

    with pytest.raises(ecs.exceptions.InvalidParameterException, match="more than one container"):
        ecs.execute_command(task=arn, command="ls", interactive=True)
    with pytest.raises(ecs.exceptions.InvalidParameterException, match="Interactive is the only mode"):
        ecs.execute_command(task=arn, container="app", command="ls", interactive=False)
    plain = run_exec_task(ecs, exec_enabled=False)
    with pytest.raises(ecs.exceptions.InvalidParameterException,
                       match="execute command was not enabled when the task was run"):
        ecs.execute_command(task=plain, container="app", command="ls", interactive=True)
    # The CLI says so too, and exits non-zero.
    out = wharf_exec(wharf_up, plain, "--container", "app", "--", "ls")
    assert out.returncode != 0 and b"execute command was not enabled" in out.stderr, out.stderr


def test_wharf_exec_runs_in_the_tasks_container(wharf_up):
    ecs = wharf_up.client()
    wait_instance(ecs)
    arn = run_exec_task(ecs)
    task_id = arn.rsplit("/", 1)[1]
    # Output on its own streams, the container's environment, its exit code.
    out = wharf_exec(wharf_up, task_id, "--container", "app", "--",
                     "sh", "-c", 'echo "$GREETING"; echo to-stderr >&2; echo mark > /tmp/mark; exit 3')
    assert out.returncode == 3, out
    assert out.stdout == b"hello from app\n"
    assert out.stderr == b"to-stderr\n"
    # It ran in that container, not the other one.
    seen = subprocess.run(["docker", "exec", container_id(arn, "app"), "cat", "/tmp/mark"],
                          capture_output=True, text=True)
    assert seen.stdout == "mark\n"
    other = subprocess.run(["docker", "exec", container_id(arn, "side"), "cat", "/tmp/mark"], capture_output=True)
    assert other.returncode != 0

    # -i passes input through to the end; without -i the command's stdin is closed.
    data = b"".join(b"line %d\n" % i for i in range(20000))
    piped = wharf_exec(wharf_up, arn, "--container", "side", "-i", "--", "cat", input=data)
    assert piped.returncode == 0 and piped.stdout == data, piped.stderr
    closed = wharf_exec(wharf_up, arn, "--container", "side", "--", "cat", input=b"ignored")
    assert closed.returncode == 0 and closed.stdout == b""

    # A command the container does not have: Docker's exit code, as `docker exec` gives it.
    missing = wharf_exec(wharf_up, arn, "--container", "app", "--", "/no/such/program")
    assert missing.returncode in (126, 127) and b"no such file" in missing.stdout + missing.stderr

    # A stopped task takes no command.
    ecs.stop_task(task=arn)
    ecs.get_waiter("tasks_stopped").wait(tasks=[arn], WaiterConfig={"Delay": 0.5, "MaxAttempts": 60})
    gone = wharf_exec(wharf_up, arn, "--container", "app", "--", "true")
    assert gone.returncode != 0 and b"must be RUNNING" in gone.stderr, gone.stderr


def test_wharf_exec_with_a_tty(wharf_up):
    ecs = wharf_up.client()
    wait_instance(ecs)
    arn = run_exec_task(ecs)
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    env = dict(os.environ, WHARF_ACCESS_KEY_ID=KEY, WHARF_SECRET_ACCESS_KEY=SECRET)
    proc = subprocess.Popen([BINARY, "exec", "--server", wharf_up.url, "-it", arn, "--container", "app", "--", "sh"],
                            stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True)
    os.close(follower)
    got = b""

    def read_until(marker, timeout=20):
        nonlocal got
        deadline = time.time() + timeout
        while marker not in got:
            assert time.time() < deadline, f"no {marker!r} in {got!r}"
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:
                    break
                got += chunk
    try:
        read_until(b"# ")  # the shell's prompt: it runs on a TTY
        os.write(leader, b"tty; stty size; exit 5\n")
        read_until(b"33 101")
        assert b"/dev/pts/" in got
        assert proc.wait(timeout=20) == 5
    finally:
        proc.kill()
        os.close(leader)


def test_wharf_exec_through_a_remote_agent_over_tls(tmp_path):
    """The command goes through the control plane to an agent that joined
    with a token over TLS: not through the local Docker socket."""
    w = Wharf(tmp_path / "d", args=["--tls", "self-signed"], tls=True)
    w.start()
    agent = None
    try:
        ecs = w.client()
        ecs.create_cluster(clusterName="remote")
        token = w.create_token("remote")["token"]
        agent = subprocess.Popen([BINARY, "agent", "--server", w.url, "--token", token, "--ca-bundle", w.ca,
                                  "--data-dir", str(tmp_path / "agent")],
                                 env=dict(os.environ, WHARF_LOG="warn"), stderr=subprocess.DEVNULL)
        wait_instance(ecs, "remote")
        arn = run_exec_task(ecs, cluster="remote")
        out = wharf_exec(w, arn, "--cluster", "remote", "--container", "app", "--", "sh", "-c", "hostname; exit 42",
                         extra=("--ca-bundle", w.ca))
        assert out.returncode == 42, out
        hostname = subprocess.run(["docker", "inspect", "-f", "{{.Config.Hostname}}", container_id(arn, "app")],
                                  capture_output=True, text=True, check=True).stdout.strip()
        assert out.stdout.decode().strip() == hostname
        url = ecs.execute_command(cluster="remote", task=arn, container="app", command="true",
                                  interactive=True)["session"]["streamUrl"]
        assert url.startswith(f"wss://127.0.0.1:{w.port}/wharf/exec/")
    finally:
        if agent:
            agent.kill()
            agent.wait()
        w.kill()
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", "label=com.amazonaws.ecs.cluster=remote"],
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


def test_a_session_no_agent_opens_ends_with_a_message(wharf):
    """A session whose host never opens the stream: the caller is told, within
    the session's time, and the stream cannot be opened twice or with a wrong token."""
    import socket
    ecs = wharf.client()
    ecs.create_cluster(clusterName="default")
    # An instance whose "agent" polls but never opens sessions: agent protocol calls by hand.
    creds = wharf.agent_credentials("default")
    agent = wharf.client_with(creds)
    inst = agent.register_container_instance(cluster="default", totalResources=[
        {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024}])["containerInstance"]["containerInstanceArn"]
    poll = {"cluster": "default", "containerInstanceArn": inst, "afterRevision": 0, "waitMillis": 0}
    wharf.agent_call("Poll", poll, creds)
    ecs.register_task_definition(family="idle", containerDefinitions=[
        {"name": "app", "image": "wharf-test/busybox:latest", "memory": 16}])
    arn = ecs.run_task(taskDefinition="idle", enableExecuteCommand=True)["tasks"][0]["taskArn"]
    wharf.agent_call("ReportTaskState", {"cluster": "default", "taskArn": arn, "status": "RUNNING",
                                         "containers": [{"name": "app", "status": "RUNNING"}]}, creds)
    session = ecs.execute_command(task=arn, command="true", interactive=True)["session"]
    path = "/wharf/exec/" + session["sessionId"]

    def open_stream(token):
        s = socket.create_connection(("127.0.0.1", wharf.port), timeout=10)
        s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: upgrade\r\n"
                   f"Upgrade: wharf-exec\r\nAuthorization: Bearer {token}\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        return s, head.split(b"\r\n", 1)[0]

    bad, status = open_stream("0" * 64)
    assert status.startswith(b"HTTP/1.1 403"), status
    bad.close()
    caller, status = open_stream(session["tokenValue"])
    assert status.startswith(b"HTTP/1.1 101"), status
    twice, status = open_stream(session["tokenValue"])
    assert status.startswith(b"HTTP/1.1 409"), status
    twice.close()
    # The caller waits; the host's agent never comes (the session's time is 60 s).
    caller.settimeout(75)
    frame = b""
    while len(frame) < 5 or len(frame) < 5 + int.from_bytes(frame[1:5], "big"):
        chunk = caller.recv(4096)
        if not chunk:
            break
        frame += chunk
    assert frame[0] == 8, frame  # an Error frame
    assert b"did not open the session within 60 s" in frame[5:]
    caller.close()
    # The session is gone: its stream cannot be opened any more.
    late, status = open_stream(session["tokenValue"])
    assert status.startswith(b"HTTP/1.1 404"), status
    late.close()


def test_sessions_are_logged_as_the_cluster_configures(wharf_up):
    ecs = wharf_up.client()
    logs = wharf_up.client("logs")
    wait_instance(ecs)
    arn = run_exec_task(ecs)
    # What Wharf cannot do is refused, and changes nothing.
    for bad, words in [
            ({"logging": "OVERRIDE", "logConfiguration": {"s3BucketName": "b"}}, "no S3"),
            ({"kmsKeyId": "k"}, "no KMS"),
            ({"logging": "OVERRIDE"}, "logConfiguration must be given")]:
        with pytest.raises(ecs.exceptions.InvalidParameterException, match=words):
            ecs.update_cluster(cluster="default", configuration={"executeCommandConfiguration": bad})
    assert "configuration" not in ecs.describe_clusters(clusters=["default"], include=["CONFIGURATIONS"])["clusters"][0]

    ecs.update_cluster(cluster="default", configuration={"executeCommandConfiguration": {
        "logging": "OVERRIDE", "logConfiguration": {"cloudWatchLogGroupName": "exec-audit"}}})
    # The group does not exist: the session does not run unlogged.
    out = wharf_exec(wharf_up, arn, "--container", "app", "--", "echo", "unlogged")
    assert out.returncode == 126 and b"cannot log the session" in out.stderr, out
    assert out.stdout == b""
    logs.create_log_group(logGroupName="exec-audit")
    out = wharf_exec(wharf_up, arn, "--container", "app", "--", "sh", "-c", "echo audited; echo line-two >&2")
    assert out.returncode == 0 and out.stdout == b"audited\n", out
    streams = logs.describe_log_streams(logGroupName="exec-audit")["logStreams"]
    assert len(streams) == 1 and streams[0]["logStreamName"].startswith("ecs-execute-command-")
    events = logs.get_log_events(logGroupName="exec-audit", logStreamName=streams[0]["logStreamName"],
                                 startFromHead=True)["events"]
    # stdout and stderr are two pipes: Docker delivers them in either order.
    assert sorted(e["message"] for e in events) == ["audited", "line-two"]

    # NONE: nothing more is logged.
    ecs.update_cluster(cluster="default", configuration={"executeCommandConfiguration": {"logging": "NONE"}})
    assert wharf_exec(wharf_up, arn, "--container", "app", "--", "echo", "quiet").returncode == 0
    assert len(logs.describe_log_streams(logGroupName="exec-audit")["logStreams"]) == 1
