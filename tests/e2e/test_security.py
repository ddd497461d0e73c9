"""The front door through the real binary: signatures that bind the body,
the service and the target; agents with their own identity; no development
keys off loopback; keys from a file; TLS with the aws CLI; slow clients."""
import datetime
import hashlib
import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.exceptions
import pytest

from conftest import BINARY, KEY, REGION, SECRET, Wharf
from test_ecs_api import WEB, ProtocolAgent, code, register_instance

ECS = "AmazonEC2ContainerServiceV20141113"


def raw(wharf, headers, body, url=None):
    """Sends a request as given (its Content-Length that of `body`); (status, decoded JSON body)."""
    headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
    r = urllib.request.Request(url or wharf.url + "/", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(r, timeout=10, context=wharf.ssl_context()) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def signed(op, payload, service="ecs", extra=None, key=KEY, secret=SECRET, url="http://127.0.0.1/", target=None):
    """Headers of `op` signed by botocore for `payload`, and the body."""
    body = json.dumps(payload).encode()
    req = botocore.awsrequest.AWSRequest(method="POST", url=url, data=body, headers={
        "X-Amz-Target": target or f"{ECS}.{op}", "Content-Type": "application/x-amz-json-1.1", **(extra or {})})
    botocore.auth.SigV4Auth(botocore.credentials.Credentials(key, secret), service, REGION).add_auth(req)
    return dict(req.prepare().headers), body


def clusters(ecs):
    return ecs.list_clusters()["clusterArns"]


def test_a_swapped_body_is_refused_even_with_its_hash_header(wharf, ecs):
    original = {"clusterName": "harmless"}
    # Signed with the original body's hash in x-amz-content-sha256, then sent
    # with another body: the header must not vouch for it.
    h, body = signed("CreateCluster", original, url=wharf.url + "/",
                     extra={"X-Amz-Content-Sha256": hashlib.sha256(json.dumps(original).encode()).hexdigest()})
    status, out = raw(wharf, h, json.dumps({"clusterName": "evil"}).encode())
    assert status == 400 and out["__type"] == "InvalidSignatureException", out
    # An altered body without the header is refused too; nothing was written.
    h, body = signed("CreateCluster", original, url=wharf.url + "/")
    status, out = raw(wharf, h, body.replace(b"harmless", b"harmlesz"))
    assert status == 400 and out["__type"] == "InvalidSignatureException"
    assert clusters(ecs) == []
    # The untouched request still works.
    status, _ = raw(wharf, h, body)
    assert status == 200 and len(clusters(ecs)) == 1


def test_the_scope_must_name_the_service_and_the_target_must_be_signed(wharf, ecs):
    h, body = signed("CreateCluster", {"clusterName": "s3scoped"}, service="s3", url=wharf.url + "/")
    status, out = raw(wharf, h, body)
    assert status == 400 and out["message"] == "Credential should be scoped to correct service: 'ecs'. ", out
    # A Logs call signed as ECS is refused the same way.
    h, body = signed("x", {}, url=wharf.url + "/", target="Logs_20140328.DescribeLogGroups")
    status, out = raw(wharf, h, body)
    assert status == 400 and out["message"] == "Credential should be scoped to correct service: 'logs'. ", out
    # An unsigned X-Amz-Target could be swapped for any operation.
    req = botocore.awsrequest.AWSRequest(method="POST", url=wharf.url + "/", data=b"{}",
                                         headers={"Content-Type": "application/x-amz-json-1.1"})
    botocore.auth.SigV4Auth(botocore.credentials.Credentials(KEY, SECRET), "ecs", REGION).add_auth(req)
    h = dict(req.prepare().headers)
    h["X-Amz-Target"] = f"{ECS}.ListClusters"
    status, out = raw(wharf, h, b"{}")
    assert status == 400 and out["message"].startswith("'X-Amz-Target' must be a 'SignedHeader'"), out
    assert clusters(ecs) == []


def test_stale_and_replayed_dates_are_refused(wharf):
    h, body = signed("ListClusters", {}, url=wharf.url + "/")
    assert raw(wharf, h, body)[0] == 200
    assert raw(wharf, h, body)[0] == 200, "a replay inside the 15-minute window is accepted, as AWS does"
    # Signed 20 minutes ago (botocore reads the clock through its own module).
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=20)
    real = botocore.auth.datetime.datetime
    class Then(real):  # noqa: E306
        @classmethod
        def utcnow(cls):
            return past.replace(tzinfo=None)

        @classmethod
        def now(cls, tz=None):
            return past if tz else past.replace(tzinfo=None)
    botocore.auth.datetime.datetime = Then
    try:
        h, body = signed("ListClusters", {}, url=wharf.url + "/")
    finally:
        botocore.auth.datetime.datetime = real
    status, out = raw(wharf, h, body)
    assert status == 400 and out["message"].startswith("Signature expired"), out


def presign(wharf, op, expires=60):
    req = botocore.awsrequest.AWSRequest(method="POST", url=wharf.url + "/", data=b"",
                                         headers={"X-Amz-Target": f"{ECS}.{op}"})
    botocore.auth.SigV4QueryAuth(botocore.credentials.Credentials(KEY, SECRET), "ecs", REGION,
                                 expires=expires).add_auth(req)
    p = req.prepare()
    return p.url, dict(p.headers)


def test_presigned_urls_as_botocore_makes_them(wharf, ecs):
    ecs.create_cluster(clusterName="seen")
    url, headers = presign(wharf, "ListClusters")
    status, out = raw(wharf, headers, b"", url=url)
    assert status == 200 and out["clusterArns"] == clusters(ecs), out
    # The URL signs the empty body, so it cannot carry another.
    status, out = raw(wharf, headers, json.dumps({"clusterName": "smuggled"}).encode(), url=url)
    assert status == 400, out
    # Tampered, or expired.
    status, _ = raw(wharf, headers, b"", url=url.replace("X-Amz-Expires=60", "X-Amz-Expires=600"))
    assert status == 400
    url, headers = presign(wharf, "ListClusters", expires=1)
    time.sleep(2.1)
    status, out = raw(wharf, headers, b"", url=url)
    assert status == 400 and out["message"].startswith("Signature expired"), out
    assert [a.rsplit("/", 1)[1] for a in clusters(ecs)] == ["seen"]


def test_api_keys_cannot_use_the_agent_protocol(wharf, ecs):
    inst = register_instance(ecs)
    with pytest.raises(urllib.error.HTTPError) as e:
        wharf.agent_call("Poll", {"cluster": "default", "containerInstanceArn": inst["containerInstanceArn"],
                                  "afterRevision": 0, "waitMillis": 0}, (KEY, SECRET))
    out = json.loads(e.value.read())
    assert e.value.code == 400 and out["__type"] == "AccessDeniedException", out
    assert out["message"].startswith("User: arn:aws:iam::000000000000:root is not authorized to perform: wharf-agent:Poll")
    desc = ecs.describe_container_instances(containerInstances=[inst["containerInstanceArn"]])
    assert desc["containerInstances"][0]["agentConnected"] is False


def test_an_agent_acts_only_for_its_own_instances_and_tasks(wharf, ecs):
    alice, bob = wharf.agent_credentials(), wharf.agent_credentials()
    a = ProtocolAgent(wharf, "default", register_instance(wharf.client_with(alice))["containerInstanceArn"], alice)
    a.poll_once()
    ecs.register_task_definition(**WEB)
    task = ecs.run_task(taskDefinition="web")["tasks"][0]
    assert task["containerInstanceArn"] == a.arn
    before = task["lastStatus"]

    def refused(op, payload, creds=bob):
        with pytest.raises(urllib.error.HTTPError) as e:
            wharf.agent_call(op, payload, creds)
        out = json.loads(e.value.read())
        assert out["__type"] == "AccessDeniedException", (op, out)

    refused("ReportTaskState", {"cluster": "default", "taskArn": task["taskArn"], "status": "STOPPED",
                                "containers": []})
    refused("Poll", {"cluster": "default", "containerInstanceArn": a.arn, "afterRevision": 0, "waitMillis": 0})
    refused("PollInstances", {"cluster": "default", "containerInstanceArns": [a.arn], "afterRevision": 0,
                              "waitMillis": 0})
    refused("Disconnect", {"cluster": "default", "containerInstanceArn": a.arn, "reason": "evil"})
    refused("GetTaskCredentials", {"taskArn": task["taskArn"]})
    # Nor may it take the instance over, register in another cluster, or use the user API.
    bob_ecs = wharf.client_with(bob)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bob_ecs.register_container_instance(cluster="default", containerInstanceArn=a.arn, totalResources=[
            {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024}])
    assert code(e) == "AccessDeniedException"
    ecs.create_cluster(clusterName="other")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        register_instance(bob_ecs, "other")
    assert code(e) == "AccessDeniedException"
    for call in (lambda: bob_ecs.list_clusters(), lambda: bob_ecs.stop_task(task=task["taskArn"])):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert code(e) == "AccessDeniedException"
    assert ecs.describe_tasks(tasks=[task["taskArn"]])["tasks"][0]["lastStatus"] == before
    # The owner can (and is told this task has no role to give credentials of).
    with pytest.raises(urllib.error.HTTPError) as e:
        wharf.agent_call("GetTaskCredentials", {"taskArn": task["taskArn"]}, alice)
    assert json.loads(e.value.read())["message"] == "The task has no task role (taskRoleArn)."
    a.report(a.poll_once()[0], "RUNNING")
    assert ecs.describe_tasks(tasks=[task["taskArn"]])["tasks"][0]["lastStatus"] == "RUNNING"


def test_revoking_a_token_disconnects_its_agents(wharf, ecs):
    made = wharf.create_token(description="rack 7")
    assert made["token"].startswith("wharf-join.")
    creds = wharf.join(made["token"])
    arn = register_instance(wharf.client_with(creds))["containerInstanceArn"]
    agent = ProtocolAgent(wharf, "default", arn, creds)
    agent.poll_once()
    connected = lambda: ecs.describe_container_instances(containerInstances=[arn])["containerInstances"][0]["agentConnected"]  # noqa: E731
    assert connected()
    listed = wharf.signed_call("WharfAdmin_v1.ListJoinTokens", {})["joinTokens"]
    assert [(t["tokenId"], t["agents"], t["description"]) for t in listed] == [(made["joinToken"]["tokenId"], 1, "rack 7")]
    assert "token" not in json.dumps(listed).replace("tokenId", "")
    out = wharf.signed_call("WharfAdmin_v1.RevokeJoinToken", {"tokenId": made["joinToken"]["tokenId"]})
    assert out["agentsRevoked"] == 1 and out["instancesDisconnected"] == 1
    assert not connected()
    with pytest.raises(urllib.error.HTTPError) as e:
        agent.poll_once()
    assert json.loads(e.value.read())["__type"] == "UnrecognizedClientException"
    with pytest.raises(urllib.error.HTTPError) as e:
        wharf.join(made["token"])
    assert json.loads(e.value.read())["__type"] == "UnrecognizedClientException"
    # A token that expired, or a forged one, buys nothing either.
    short = wharf.create_token(expiresInSeconds=1)["token"]
    time.sleep(1.2)
    for bad in (short, made["token"][:-4] + "0000", "wharf-join.zz.zz", ""):
        with pytest.raises(urllib.error.HTTPError):
            wharf.join(bad)


def test_the_real_agent_joins_with_a_token_from_the_cli(wharf, ecs, tmp_path):
    ecs.create_cluster(clusterName="default")
    env = dict(os.environ, WHARF_SERVER=wharf.url, WHARF_ACCESS_KEY_ID=KEY, WHARF_SECRET_ACCESS_KEY=SECRET)
    made = subprocess.run([BINARY, "token", "create", "--cluster", "default"], env=env,
                          capture_output=True, text=True, check=True)
    token = made.stdout.strip()
    agent = subprocess.Popen([BINARY, "agent", "--server", wharf.url, "--token", token,
                              "--data-dir", str(tmp_path / "agent")],
                             env=dict(os.environ, WHARF_LOG="warn"), stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        arns = []
        while time.time() < deadline and not arns:
            arns = ecs.list_container_instances()["containerInstanceArns"]
            time.sleep(0.1)
        assert arns, "the agent never registered"
        saved = tmp_path / "agent" / "credentials.json"
        assert oct(saved.stat().st_mode & 0o777) == "0o600"
        assert token not in saved.read_text()
        token_id = json.loads(subprocess.run([BINARY, "token", "list"], env=env, capture_output=True,
                                             text=True, check=True).stdout)["joinTokens"][0]["tokenId"]
        subprocess.run([BINARY, "token", "revoke", token_id], env=env, capture_output=True, check=True)
        desc = ecs.describe_container_instances(containerInstances=arns)["containerInstances"][0]
        assert desc["agentConnected"] is False
    finally:
        agent.kill()
        agent.wait()


def start_server(tmp_path, listen, env, args=()):
    return subprocess.run([BINARY, "server", "--ephemeral", "--listen", listen, "--data-dir", str(tmp_path / "d"),
                           *args], env=dict(os.environ, WHARF_LOG="warn", **env),
                          capture_output=True, text=True, timeout=10)


def test_development_keys_never_serve_a_non_loopback_address(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}
    for listen in ("0.0.0.0:0", "[::]:0"):
        out = subprocess.run([BINARY, "server", "--ephemeral", "--listen", listen], env=env,
                             capture_output=True, text=True, timeout=10)
        assert out.returncode != 0 and "not a loopback address" in out.stderr, out.stderr
    # With keys of its own, it serves there (the test reaches it on loopback).
    w = Wharf(tmp_path / "open")
    port = w.port
    proc = subprocess.Popen([BINARY, "server", "--ephemeral", "--listen", f"0.0.0.0:{port}"],
                            env=dict(env, WHARF_ACCESS_KEY_ID=KEY, WHARF_SECRET_ACCESS_KEY=SECRET),
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=0.2)
                break
            except OSError:
                time.sleep(0.05)
        assert w.client().list_clusters()["clusterArns"] == []
    finally:
        proc.kill()
        proc.wait()


def test_keys_from_a_credentials_file(tmp_path):
    f = tmp_path / "keys"
    f.write_text("# admins\nAKIAFIRST first-secret\nAKIASECOND:second-secret\n")
    w = Wharf(tmp_path / "d", args=["--credentials-file", str(f)], keys=False)
    w.start()
    try:
        for key, secret in (("AKIAFIRST", "first-secret"), ("AKIASECOND", "second-secret")):
            assert w.client_with((key, secret)).list_clusters()["clusterArns"] == []
        with pytest.raises(botocore.exceptions.ClientError) as e:
            w.client().list_clusters()  # the environment's keys are not in the file
        assert code(e) == "UnrecognizedClientException"
    finally:
        w.kill()
    bad = tmp_path / "bad"
    bad.write_text("only-a-key\n")
    out = start_server(tmp_path, "127.0.0.1:0", {}, ["--credentials-file", str(bad)])
    assert out.returncode != 0 and "line 1" in out.stderr


def aws_cli(*args, env=None):
    return subprocess.run(["aws", *args], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET,
                                   AWS_DEFAULT_REGION=REGION, **(env or {})))


def test_the_aws_cli_over_tls_with_a_self_signed_ca(tmp_path):
    w = Wharf(tmp_path / "d", args=["--tls", "self-signed"], tls=True)
    w.start()
    try:
        ok = aws_cli("--endpoint-url", w.url, "--ca-bundle", w.ca, "ecs", "create-cluster", "--cluster-name", "tls")
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout)["cluster"]["clusterName"] == "tls"
        # Without the CA the CLI refuses the certificate; plain HTTP gets no API.
        bad = aws_cli("--endpoint-url", w.url, "ecs", "list-clusters")
        assert bad.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in bad.stderr, bad.stderr
        with pytest.raises(Exception):
            urllib.request.urlopen(w.url.replace("https", "http") + "/healthz", timeout=2).read()
    finally:
        w.kill()


def test_tls_with_an_operator_certificate(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=True, capture_output=True)
    w = Wharf(tmp_path / "d", args=["--tls-cert", str(cert), "--tls-key", str(key)], tls=True)
    w.ca = str(cert)
    w.start()
    try:
        assert w.client().list_clusters()["clusterArns"] == []
    finally:
        w.kill()
    out = start_server(tmp_path, "127.0.0.1:0", {"WHARF_ACCESS_KEY_ID": KEY, "WHARF_SECRET_ACCESS_KEY": SECRET},
                       ["--tls-cert", str(key), "--tls-key", str(key)])
    assert out.returncode != 0 and "no PEM certificate" in out.stderr, out.stderr


def test_a_slowloris_client_does_not_block_other_callers(wharf, ecs):
    """Two hundred connections that dribble their headers a byte at a time
    hold only themselves: every other caller is served at once."""
    socks = []
    stop = threading.Event()
    for _ in range(200):
        s = socket.create_connection(("127.0.0.1", wharf.port))
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)

    def dribble():
        while not stop.is_set():
            for s in socks:
                try:
                    s.sendall(b"X")
                except OSError:
                    pass
            time.sleep(0.5)
    t = threading.Thread(target=dribble, daemon=True)
    t.start()
    try:
        times = []
        for _ in range(10):
            t0 = time.time()
            ecs.list_clusters()
            times.append(time.time() - t0)
        assert max(times) < 1.0, times
    finally:
        stop.set()
        t.join()
        for s in socks:
            s.close()


def test_bad_bytes_get_an_aws_error_and_write_nothing(wharf, ecs):
    for body in (b"\xff\xfe\xfd", b'{"clusterName": "\\ud800"}', b"[" * 100_000, b'{"clusterName": ' + b"9" * 5000 + b"}",
                 b'{"clusterName": "' + b"a" * 300 + b'"}', b'{"clusterName": "' + b"a" * (5 << 20) + b'"}'):
        req = botocore.awsrequest.AWSRequest(method="POST", url=wharf.url + "/", data=body, headers={
            "X-Amz-Target": f"{ECS}.CreateCluster", "Content-Type": "application/x-amz-json-1.1"})
        botocore.auth.SigV4Auth(botocore.credentials.Credentials(KEY, SECRET), "ecs", REGION).add_auth(req)
        status, out = raw(wharf, dict(req.prepare().headers), body)
        assert 400 <= status < 500 and out.get("__type"), (body[:40], status, out)
    assert clusters(ecs) == []
    # A head larger than the server reads is refused, not buffered without end.
    with socket.create_connection(("127.0.0.1", wharf.port), timeout=5) as s:
        try:
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (100 << 10) + b"\r\n\r\n")
        except OSError:
            pass  # the server may stop reading, and close, before the head is all sent
        assert s.recv(64).startswith(b"HTTP/1.1 431"), "an oversized head is answered 431"


def test_agents_verify_the_servers_certificate(tmp_path):
    """`wharf up --tls self-signed` runs a task through agents that trust its
    CA; a remote agent without the CA refuses to talk to the server."""
    w = Wharf(tmp_path / "d", mode="up", args=["--tls", "self-signed"], tls=True)
    w.start()
    try:
        ecs = w.client()
        deadline = time.time() + 20
        while time.time() < deadline:  # the local agents connect over TLS
            arns = ecs.list_container_instances()["containerInstanceArns"] if ecs.list_clusters()["clusterArns"] else []
            if arns and ecs.describe_container_instances(containerInstances=arns)["containerInstances"][0]["agentConnected"]:
                break
            time.sleep(0.1)
        ecs.register_task_definition(family="tls", containerDefinitions=[{
            "name": "app", "image": "wharf-test/busybox:latest", "memory": 16, "command": ["sleep", "30"]}])
        arn = ecs.run_task(taskDefinition="tls")["tasks"][0]["taskArn"]
        ecs.get_waiter("tasks_running").wait(tasks=[arn], WaiterConfig={"Delay": 0.2, "MaxAttempts": 150})
        ecs.stop_task(task=arn)
        token = w.create_token()["token"]
        out = subprocess.run([BINARY, "agent", "--server", w.url, "--token", token,
                              "--data-dir", str(tmp_path / "agent")], capture_output=True, text=True, timeout=20,
                             env=dict(os.environ, WHARF_LOG="warn"))
        assert out.returncode != 0 and "cannot authenticate" in out.stderr, out.stderr
        assert not (tmp_path / "agent" / "credentials.json").exists()
    finally:
        w.kill()
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", "label=com.amazonaws.ecs.cluster=default"],
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


def test_an_agent_submits_state_changes_only_for_its_own_tasks(wharf, ecs):
    """SubmitTaskStateChange and SubmitContainerStateChange, the ECS agent's
    reports, take agent credentials and hold an agent to its own instances."""
    ecs.create_cluster(clusterName="default")
    mine, theirs = wharf.agent_credentials(), wharf.agent_credentials()
    agent = wharf.client_with(mine)
    inst = agent.register_container_instance(cluster="default", totalResources=[
        {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024}])["containerInstance"]["containerInstanceArn"]
    wharf.agent_call("Poll", {"cluster": "default", "containerInstanceArn": inst,
                              "afterRevision": 0, "waitMillis": 0}, mine)
    assert agent.discover_poll_endpoint(cluster="default", containerInstance=inst)["endpoint"] == wharf.url + "/"
    ecs.register_task_definition(family="reported", containerDefinitions=[
        {"name": "app", "image": "wharf-test/busybox:latest", "memory": 16}])
    arn = ecs.run_task(taskDefinition="reported")["tasks"][0]["taskArn"]
    change = dict(cluster="default", task=arn, status="RUNNING",
                  containers=[{"containerName": "app", "status": "RUNNING", "runtimeId": "abc"}])
    with pytest.raises(botocore.exceptions.ClientError) as denied:
        wharf.client_with(theirs).submit_task_state_change(**change)
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    assert ecs.describe_tasks(tasks=[arn])["tasks"][0]["lastStatus"] == "PROVISIONING"
    assert agent.submit_task_state_change(**change)["acknowledgment"] == "ACK"
    assert ecs.describe_tasks(tasks=[arn])["tasks"][0]["lastStatus"] == "RUNNING"
    # Agent credentials still reach no other ECS operation.
    with pytest.raises(botocore.exceptions.ClientError) as denied:
        agent.list_clusters()
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
