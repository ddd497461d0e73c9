"""Elastic Load Balancing v2 through boto3 and the aws CLI, with real traffic:
the API and its errors, listeners routing to local backends, and ECS services
behind a listener through rolling deployments, lost containers and scale-in."""
import http.client
import http.server
import json
import os
import socket
import subprocess
import threading
import time
import urllib.parse

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest
from botocore.exceptions import ClientError

from conftest import BINARY, KEY, REGION, SECRET, Wharf, free_port, remove_test_containers
from test_docker import wait_instance

IMAGE = "wharf-test/busybox:latest"


def code(e):
    return e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]


def fast_group(elb, name, port, target_type="ip", path="/", **extra):
    """A target group that decides health in two 5-second checks."""
    return elb.create_target_group(
        Name=name, Protocol="HTTP", Port=port, VpcId="vpc-1", TargetType=target_type,
        HealthCheckPath=path, HealthCheckIntervalSeconds=5, HealthCheckTimeoutSeconds=2,
        HealthyThresholdCount=2, UnhealthyThresholdCount=2, **extra)["TargetGroups"][0]["TargetGroupArn"]


def forward(tg):
    return [{"Type": "forward", "TargetGroupArn": tg}]


def get(port, path="/", host="127.0.0.1", headers=None, timeout=5):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", path, headers={"Host": host, **(headers or {})})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def test_elbv2_api_and_its_errors(wharf):
    elb = wharf.client("elbv2")
    lb = elb.create_load_balancer(Name="api", Subnets=["subnet-a", "subnet-b"],
                                  Tags=[{"Key": "team", "Value": "web"}])["LoadBalancers"][0]
    assert lb["Type"] == "application" and lb["State"]["Code"] == "active"
    assert lb["DNSName"].endswith(f".{REGION}.elb.localhost")
    assert [z["ZoneName"] for z in lb["AvailabilityZones"]] == [f"{REGION}a", f"{REGION}b"]
    # The same request again returns the same load balancer (ELB is idempotent here)...
    again = elb.create_load_balancer(Name="api", Subnets=["subnet-a", "subnet-b"])["LoadBalancers"][0]
    assert again["LoadBalancerArn"] == lb["LoadBalancerArn"]
    # ...different settings under the same name are refused.
    with pytest.raises(ClientError) as e:
        elb.create_load_balancer(Name="api", Subnets=["subnet-c"])
    assert code(e) == ("DuplicateLoadBalancerName", 400)
    elb.get_waiter("load_balancer_available").wait(LoadBalancerArns=[lb["LoadBalancerArn"]])

    tgs = [fast_group(elb, f"tg-{i}", 8000 + i) for i in range(5)]
    page = elb.describe_target_groups(PageSize=2)
    assert len(page["TargetGroups"]) == 2 and page["NextMarker"]
    names = [t["TargetGroupName"] for p in elb.get_paginator("describe_target_groups").paginate(PaginationConfig={"PageSize": 2})
             for t in p["TargetGroups"]]
    assert names == [f"tg-{i}" for i in range(5)]

    port = free_port()
    listener = elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=port,
                                   DefaultActions=forward(tgs[0]))["Listeners"][0]
    assert elb.describe_target_groups(TargetGroupArns=[tgs[0]])["TargetGroups"][0]["LoadBalancerArns"] == [lb["LoadBalancerArn"]]
    rule = elb.create_rule(ListenerArn=listener["ListenerArn"], Priority=10,
                           Conditions=[{"Field": "path-pattern", "Values": ["/a/*"]}],
                           Actions=forward(tgs[1]))["Rules"][0]
    rules = elb.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]
    assert [r["Priority"] for r in rules] == ["10", "default"]
    assert rules[1]["IsDefault"] is True
    with pytest.raises(ClientError) as e:
        elb.create_rule(ListenerArn=listener["ListenerArn"], Priority=10,
                        Conditions=[{"Field": "path-pattern", "Values": ["/b/*"]}], Actions=forward(tgs[2]))
    assert code(e) == ("PriorityInUse", 400)
    elb.set_rule_priorities(RulePriorities=[{"RuleArn": rule["RuleArn"], "Priority": 20}])
    assert elb.describe_rules(RuleArns=[rule["RuleArn"]])["Rules"][0]["Priority"] == "20"

    # Bad input is refused and nothing is written.
    tcp = elb.create_target_group(Name="tcp", Protocol="TCP", Port=9, VpcId="vpc-1")["TargetGroups"][0]["TargetGroupArn"]
    other_vpc = elb.create_target_group(Name="other", Protocol="HTTP", Port=9, VpcId="vpc-2")["TargetGroups"][0]["TargetGroupArn"]
    for actions, expected in [(forward(tcp), "IncompatibleProtocols"), (forward(other_vpc), "InvalidConfigurationRequest")]:
        with pytest.raises(ClientError) as e:
            elb.create_rule(ListenerArn=listener["ListenerArn"], Priority=30,
                            Conditions=[{"Field": "path-pattern", "Values": ["/c"]}], Actions=actions)
        assert code(e)[0] == expected
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ClientError) as e:
            elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=taken.getsockname()[1],
                                DefaultActions=forward(tgs[0]))
        assert code(e)[0] == "InvalidConfigurationRequest"
        assert "cannot be used" in e.value.response["Error"]["Message"]
    second = elb.create_load_balancer(Name="second", Subnets=["subnet-a"])["LoadBalancers"][0]
    with pytest.raises(ClientError) as e:
        elb.create_listener(LoadBalancerArn=second["LoadBalancerArn"], Protocol="HTTP", Port=port,
                            DefaultActions=forward(tgs[3]))
    assert code(e)[0] == "DuplicateListener"
    assert elb.describe_listeners(LoadBalancerArn=second["LoadBalancerArn"])["Listeners"] == []
    assert len(elb.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]) == 2
    with pytest.raises(ClientError) as e:
        elb.modify_target_group_attributes(TargetGroupArn=tgs[0], Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": "5"},
            {"Key": "proxy_protocol_v2.enabled", "Value": "true"}])
    assert code(e)[0] == "ValidationError"
    attrs = {a["Key"]: a["Value"] for a in elb.describe_target_group_attributes(TargetGroupArn=tgs[0])["Attributes"]}
    assert attrs["deregistration_delay.timeout_seconds"] == "300", "a refused change changes nothing"
    with pytest.raises(ClientError) as e:
        elb.create_trust_store(Name="ts", CaCertificatesBundleS3Bucket="b", CaCertificatesBundleS3Key="k")
    assert code(e)[0] == "OperationNotPermitted"
    with pytest.raises(ClientError) as e:
        elb.describe_load_balancers(LoadBalancerArns=[lb["LoadBalancerArn"].replace("api", "nope")])
    assert code(e) == ("LoadBalancerNotFound", 400)
    with pytest.raises(ClientError) as e:
        elb.delete_target_group(TargetGroupArn=tgs[0])
    assert code(e)[0] == "ResourceInUse"

    elb.add_tags(ResourceArns=[tgs[0], listener["ListenerArn"]], Tags=[{"Key": "env", "Value": "ci"}])
    elb.remove_tags(ResourceArns=[lb["LoadBalancerArn"]], TagKeys=["team"])
    described = {d["ResourceArn"]: d["Tags"] for d in elb.describe_tags(
        ResourceArns=[tgs[0], listener["ListenerArn"], lb["LoadBalancerArn"]])["TagDescriptions"]}
    assert described == {tgs[0]: [{"Key": "env", "Value": "ci"}],
                         listener["ListenerArn"]: [{"Key": "env", "Value": "ci"}], lb["LoadBalancerArn"]: []}
    limits = {l["Name"]: l["Max"] for l in elb.describe_account_limits()["Limits"]}
    assert limits["target-groups"] == "3000"

    # The XML error envelope and status of a bad signature and of a parameter no model has.
    def raw(params, secret=SECRET):
        body = urllib.parse.urlencode({"Version": "2015-12-01", **params})
        req = botocore.awsrequest.AWSRequest(method="POST", url=wharf.url + "/", data=body, headers={
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
        botocore.auth.SigV4Auth(botocore.credentials.Credentials(KEY, secret), "elasticloadbalancing", REGION).add_auth(req)
        conn = http.client.HTTPConnection("127.0.0.1", wharf.port, timeout=10)
        conn.request("POST", "/", body=body, headers=dict(req.prepare().headers))
        r = conn.getresponse()
        return r.status, r.read().decode()

    status, xml = raw({"Action": "DescribeLoadBalancers"}, secret="wrong")
    assert status == 403 and "<Code>SignatureDoesNotMatch</Code>" in xml and "<ErrorResponse" in xml
    status, xml = raw({"Action": "DescribeLoadBalancers", "Bogus": "1"})
    assert status == 400 and "<Code>ValidationError</Code>" in xml and "Bogus" in xml
    status, xml = raw({"Action": "DescribeLoadBalancers"})
    assert status == 200 and "<DescribeLoadBalancersResult>" in xml and "<RequestId>" in xml

    # The aws CLI (another client stack) reads the same state.
    out = subprocess.run(["aws", "--endpoint-url", wharf.url, "--region", REGION, "elbv2", "describe-listeners",
                          "--load-balancer-arn", lb["LoadBalancerArn"], "--output", "json"],
                         env=dict(os.environ, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET),
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["Listeners"][0]["Port"] == port

    elb.delete_listener(ListenerArn=listener["ListenerArn"])
    elb.delete_target_group(TargetGroupArn=tgs[0])
    elb.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
    elb.get_waiter("load_balancers_deleted").wait(LoadBalancerArns=[lb["LoadBalancerArn"]])


class Backend(threading.Thread):
    """A local HTTP server that answers with its name and the request's headers."""

    def __init__(self, name, status=200):
        super().__init__(daemon=True)
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                body = json.dumps({"name": backend.name, "path": self.path,
                                   "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
                self.send_response(backend.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.name, self.status = name, status
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    def run(self):
        self.server.serve_forever()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def echo_upgrade_server():
    """A backend that accepts an `Upgrade: echo` request with 101 and then echoes bytes."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve():
        while True:
            conn, _ = srv.accept()
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            if b"GET /health" in data:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                conn.close()
                continue
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
            while chunk := conn.recv(4096):
                conn.sendall(chunk)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1]


def test_listener_routes_checks_health_and_speaks_http2_and_websocket(wharf):
    elb = wharf.client("elbv2")
    a, b = Backend("a"), Backend("b")
    a.start()
    b.start()
    lb = elb.create_load_balancer(Name="edge", Subnets=["subnet-a"])["LoadBalancers"][0]
    ta = fast_group(elb, "ta", a.port)
    tb = fast_group(elb, "tb", b.port)
    echo = fast_group(elb, "echo", echo_upgrade_server(), path="/health")
    empty = fast_group(elb, "empty", 80)
    port = free_port()
    listener = elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=port,
                                   DefaultActions=forward(ta))["Listeners"][0]["ListenerArn"]
    rules = [
        (10, [{"Field": "path-pattern", "Values": ["/b/*"]}], forward(tb)),
        (20, [{"Field": "host-header", "Values": ["*.example.com"]},
              {"Field": "http-request-method", "HttpRequestMethodConfig": {"Values": ["GET"]}}], forward(tb)),
        (30, [{"Field": "query-string", "QueryStringConfig": {"Values": [{"Key": "fixed", "Value": "1"}]}}],
         [{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "418", "ContentType": "text/plain",
                                                             "MessageBody": "teapot"}}]),
        (40, [{"Field": "path-pattern", "Values": ["/old"]}],
         [{"Type": "redirect", "RedirectConfig": {"Path": "/new", "StatusCode": "HTTP_301"}}]),
        (50, [{"Field": "path-pattern", "Values": ["/ws"]}], forward(echo)),
        (60, [{"Field": "path-pattern", "Values": ["/empty"]}], forward(empty)),
    ]
    for priority, conditions, actions in rules:
        elb.create_rule(ListenerArn=listener, Priority=priority, Conditions=conditions, Actions=actions)
    echo_port = elb.describe_target_groups(TargetGroupArns=[echo])["TargetGroups"][0]["Port"]
    for tg, p in [(ta, a.port), (tb, b.port), (echo, echo_port)]:
        elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": "127.0.0.1", "Port": p}])
    health = elb.describe_target_health(TargetGroupArn=ta)["TargetHealthDescriptions"][0]["TargetHealth"]
    assert health["State"] == "initial"
    assert health["Reason"] in ("Elb.RegistrationInProgress", "Elb.InitialHealthChecking")
    for tg, p in [(ta, a.port), (tb, b.port), (echo, echo_port)]:
        elb.get_waiter("target_in_service").wait(TargetGroupArn=tg, Targets=[{"Id": "127.0.0.1", "Port": p}],
                                                 WaiterConfig={"Delay": 1, "MaxAttempts": 30})

    status, _, body = get(port, "/b/x")
    assert status == 200 and json.loads(body)["name"] == "b"
    status, _, body = get(port, "/", host="api.example.com")
    assert json.loads(body)["name"] == "b"
    status, headers, body = get(port, "/anything", headers={"X-Forwarded-For": "203.0.113.9"})
    seen = json.loads(body)
    assert seen["name"] == "a" and seen["path"] == "/anything"
    assert seen["headers"]["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert seen["headers"]["x-forwarded-proto"] == "http"
    assert seen["headers"]["x-forwarded-port"] == str(port)
    assert seen["headers"]["x-amzn-trace-id"].startswith("Root=1-")
    assert get(port, "/x?fixed=1")[0::2] == (418, b"teapot")
    status, headers, _ = get(port, "/old?q=1", host="shop.test")
    assert status == 301 and headers["location"] == f"http://shop.test:{port}/new?q=1"
    status, headers, body = get(port, "/empty")
    assert status == 503 and headers["server"] == "awselb/2.0"

    # Keep-alive: one connection, many requests.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for _ in range(20):
        conn.request("GET", "/b/keep")
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["name"] == "b"
    conn.close()

    # HTTP/2 to clients (prior knowledge), at the load balancer's DNS name, which resolves on this host.
    out = subprocess.run(["curl", "-s", "-i", "--http2-prior-knowledge", f"http://{lb['DNSName']}:{port}/b/h2"],
                         capture_output=True, text=True, timeout=20).stdout
    assert out.startswith("HTTP/2 200"), out

    # A kept-alive connection idle past the idle timeout is closed.
    elb.modify_load_balancer_attributes(LoadBalancerArn=lb["LoadBalancerArn"], Attributes=[
        {"Key": "idle_timeout.timeout_seconds", "Value": "2"}])
    time.sleep(0.3)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /b/idle HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        started = time.time()
        while s.recv(4096):
            pass
        assert 1.5 < time.time() - started < 5, time.time() - started

    # HTTPS with a certificate file (until Wharf has ACM), HTTP/2 by ALPN.
    pem = str(wharf.data_dir.parent / "lb.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                    "-days", "1", "-keyout", pem + ".key", "-out", pem + ".crt"], check=True, capture_output=True)
    with open(pem, "w") as out:
        out.write(open(pem + ".crt").read() + open(pem + ".key").read())
    tls_port = free_port()
    with pytest.raises(ClientError) as e:
        elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTPS", Port=tls_port,
                            Certificates=[{"CertificateArn": "file:///nonexistent.pem"}], DefaultActions=forward(tb))
    assert code(e)[0] == "CertificateNotFound"
    https = elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTPS", Port=tls_port,
                                Certificates=[{"CertificateArn": f"file://{pem}"}], DefaultActions=forward(tb))
    assert https["Listeners"][0]["SslPolicy"] == "ELBSecurityPolicy-2016-08"
    out = wait_for(lambda: subprocess.run(["curl", "-sk", "-i", "--http2", f"https://127.0.0.1:{tls_port}/tls"],
                                          capture_output=True, text=True, timeout=20).stdout, "the HTTPS listener", 10)
    assert out.startswith("HTTP/2 200"), out
    assert json.loads(out.split("\n\n", 1)[1])["headers"]["x-forwarded-proto"] == "https"
    # The listener's TLS policy decides the protocol versions it offers.
    def curl_tls(*flags):
        return subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", *flags,
                               f"https://127.0.0.1:{tls_port}/tls"], capture_output=True, text=True, timeout=20)
    assert curl_tls("--tls-max", "1.2").stdout == "200"
    elb.modify_listener(ListenerArn=https["Listeners"][0]["ListenerArn"], SslPolicy="ELBSecurityPolicy-TLS13-1-3-2021-06")
    time.sleep(0.5)
    assert curl_tls("--tls-max", "1.2").returncode != 0, "TLS 1.2 refused by a TLS 1.3-only policy"
    assert curl_tls("--tlsv1.3").stdout == "200"

    # A WebSocket-style upgrade is passed through in both directions.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        assert head.startswith(b"HTTP/1.1 101")
        s.sendall(b"ping through the load balancer")
        got = b""
        while len(got) < 30:
            got += s.recv(4096)
        assert got == b"ping through the load balancer"

    # Two targets: round robin, then lb_cookie stickiness, then weights.
    pair = fast_group(elb, "pair", a.port)
    elb.register_targets(TargetGroupArn=pair, Targets=[{"Id": "127.0.0.1", "Port": a.port},
                                                       {"Id": "127.0.0.1", "Port": b.port}])
    elb.create_rule(ListenerArn=listener, Priority=80, Conditions=[{"Field": "path-pattern", "Values": ["/pair"]}],
                    Actions=forward(pair))
    elb.get_waiter("target_in_service").wait(TargetGroupArn=pair, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    names = [json.loads(get(port, "/pair")[2])["name"] for _ in range(6)]
    assert sorted(set(names)) == ["a", "b"], names
    elb.modify_target_group_attributes(TargetGroupArn=pair, Attributes=[
        {"Key": "stickiness.enabled", "Value": "true"}, {"Key": "stickiness.lb_cookie.duration_seconds", "Value": "60"}])
    time.sleep(0.3)
    status, headers, body = get(port, "/pair")
    cookie = headers["set-cookie"].split(";")[0]
    assert cookie.startswith("AWSALB=") and "Max-Age=60" in headers["set-cookie"]
    first = json.loads(body)["name"]
    assert {json.loads(get(port, "/pair", headers={"Cookie": cookie})[2])["name"] for _ in range(6)} == {first}
    elb.modify_rule(RuleArn=elb.describe_rules(ListenerArn=listener)["Rules"][-2]["RuleArn"], Actions=[
        {"Type": "forward", "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": pair, "Weight": 0},
                                                               {"TargetGroupArn": tb, "Weight": 5}]}}])
    time.sleep(0.3)
    assert {json.loads(get(port, "/pair")[2])["name"] for _ in range(6)} == {"b"}

    # A target that fails its checks turns unhealthy with ELB's reason.
    b.status = 500
    deadline = time.time() + 30
    while time.time() < deadline:
        h = elb.describe_target_health(TargetGroupArn=tb)["TargetHealthDescriptions"][0]["TargetHealth"]
        if h["State"] == "unhealthy":
            break
        time.sleep(0.5)
    assert h == {"State": "unhealthy", "Reason": "Target.ResponseCodeMismatch",
                 "Description": "Health checks failed with these codes"}, h
    # Every target unhealthy: ELB fails open and still routes to them.
    assert get(port, "/b/open")[0] == 500
    # Deregistered: draining, then gone (no request in flight), and 503.
    elb.deregister_targets(TargetGroupArn=tb, Targets=[{"Id": "127.0.0.1", "Port": b.port}])
    assert elb.describe_target_health(TargetGroupArn=tb)["TargetHealthDescriptions"][0]["TargetHealth"]["State"] == "draining"
    elb.get_waiter("target_deregistered").wait(TargetGroupArn=tb, Targets=[{"Id": "127.0.0.1", "Port": b.port}],
                                               WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    assert get(port, "/b/gone")[0] == 503
    # A target that refuses the connection (health checks off, so it is
    # routed to): 502.
    dead = elb.create_target_group(Name="dead", Protocol="HTTP", Port=free_port(), VpcId="vpc-1", TargetType="ip",
                                   HealthCheckEnabled=False)["TargetGroups"][0]["TargetGroupArn"]
    elb.register_targets(TargetGroupArn=dead, Targets=[{"Id": "127.0.0.1"}])
    assert elb.describe_target_health(TargetGroupArn=dead)["TargetHealthDescriptions"][0]["TargetHealth"]["State"] == "unused"
    elb.create_rule(ListenerArn=listener, Priority=70, Conditions=[{"Field": "path-pattern", "Values": ["/dead"]}],
                    Actions=forward(dead))
    assert elb.describe_target_health(TargetGroupArn=dead)["TargetHealthDescriptions"][0]["TargetHealth"]["State"] == "unavailable"
    assert wait_for(lambda: get(port, "/dead")[0] == 502, "a 502 from the dead target", timeout=10)


class Load(threading.Thread):
    """Steady requests through a listener over keep-alive connections,
    counting every answer that is not 2xx and every connection error."""

    def __init__(self, port, paths, workers=4):
        super().__init__(daemon=True)
        self.port, self.paths, self.workers = port, paths, workers
        self.ok, self.failures, self.stop_flag = 0, [], False
        self.seen = set()
        self.lock = threading.Lock()
        self.started, self.phases = time.time(), []

    def worker(self):
        conn = None
        i = 0
        while not self.stop_flag:
            path = self.paths[i % len(self.paths)]
            i += 1
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", path)
                r = conn.getresponse()
                body = r.read()
                with self.lock:
                    if 200 <= r.status < 300:
                        self.ok += 1
                        self.seen.add(body.strip())
                    else:
                        self.failures.append((round(time.time() - self.started, 1), path, r.status, body[:40]))
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.failures.append((round(time.time() - self.started, 1), path, type(e).__name__, str(e)))
                conn = None

    def mark(self, phase):
        self.phases.append((round(time.time() - self.started, 1), phase))

    def run(self):
        threads = [threading.Thread(target=self.worker, daemon=True) for _ in range(self.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def stop(self):
        self.stop_flag = True
        self.join(timeout=30)


def web_task(ecs, family, prefix):
    """Serves `<prefix>/` with the task's hostname (its container id)."""
    return ecs.register_task_definition(family=family, containerDefinitions=[{
        "name": "web", "image": IMAGE, "memory": 32, "stopTimeout": 2,
        "portMappings": [{"containerPort": 80, "hostPort": 0}],
        "command": ["sh", "-c", f"mkdir -p /www{prefix}; hostname > /www{prefix}/index.html; "
                                f"exec httpd -f -p 80 -h /www"]}])["taskDefinition"]["taskDefinitionArn"]


def wait_for(predicate, what, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def stable(ecs, name):
    ecs.get_waiter("services_stable").wait(services=[name], WaiterConfig={"Delay": 1, "MaxAttempts": 120})


def test_services_behind_one_listener_deploy_heal_and_scale_without_failed_requests(wharf_up):
    ecs, elb = wharf_up.client(), wharf_up.client("elbv2")
    wait_instance(ecs)
    lb = elb.create_load_balancer(Name="shop", Subnets=["subnet-a", "subnet-b"])["LoadBalancers"][0]
    groups = {}
    for name in ("front", "api"):
        groups[name] = fast_group(elb, name, 80, target_type="instance", path=f"/{name}/")
        elb.modify_target_group_attributes(TargetGroupArn=groups[name], Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": "5"}])
    port = free_port()
    listener = elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=port,
                                   DefaultActions=forward(groups["front"]))["Listeners"][0]["ListenerArn"]
    elb.create_rule(ListenerArn=listener, Priority=1, Conditions=[{"Field": "path-pattern", "Values": ["/api/*"]}],
                    Actions=forward(groups["api"]))
    for name in ("front", "api"):
        ecs.create_service(serviceName=name, taskDefinition=web_task(ecs, name, f"/{name}"), desiredCount=2,
                           loadBalancers=[{"targetGroupArn": groups[name], "containerName": "web", "containerPort": 80}],
                           deploymentConfiguration={"minimumHealthyPercent": 100, "maximumPercent": 200})
    for name in ("front", "api"):
        stable(ecs, name)
        # services-stable counts RUNNING tasks; the targets pass their checks after.
        elb.get_waiter("target_in_service").wait(TargetGroupArn=groups[name], WaiterConfig={"Delay": 1})
        targets = elb.describe_target_health(TargetGroupArn=groups[name])["TargetHealthDescriptions"]
        assert len(targets) == 2 and {t["TargetHealth"]["State"] for t in targets} == {"healthy"}
        assert all(t["Target"]["Port"] >= 1024 for t in targets), "bridge mode's dynamic host ports"
    registered = f"targets in (target-group {groups['front']})"
    events = wait_for(lambda: [e["message"] for e in ecs.describe_services(services=["front"])["services"][0]["events"]
                               if e["message"].startswith("(service front) registered ") and registered in e["message"]],
                      "the registration events", timeout=10)
    assert sum(int(m.split()[3]) for m in events) == 2, events
    service = ecs.describe_services(services=["front"])["services"][0]
    assert service["loadBalancers"] == [{"targetGroupArn": groups["front"], "containerName": "web", "containerPort": 80}]

    # Both services at the load balancer's DNS name, routed by path.
    for path in ("/front/", "/api/"):
        out = subprocess.run(["curl", "-sf", f"http://{lb['DNSName']}:{port}{path}"], capture_output=True,
                             text=True, timeout=10)
        assert out.returncode == 0 and len(out.stdout.strip()) == 12, out

    load = Load(port, ["/front/", "/api/"])
    load.start()
    try:
        # A rolling deployment (100% / 200%) under load.
        before = {t["taskArn"] for t in ecs.describe_tasks(tasks=ecs.list_tasks(serviceName="front")["taskArns"])["tasks"]}
        load.mark("deploy")
        ecs.update_service(service="front", forceNewDeployment=True)
        time.sleep(1)
        stable(ecs, "front")
        wait_for(lambda: ecs.describe_services(services=["front"])["services"][0]["deployments"][0]["rolloutState"]
                 == "COMPLETED", "the rollout to complete")
        after = {t["taskArn"] for t in ecs.describe_tasks(tasks=ecs.list_tasks(serviceName="front")["taskArns"])["tasks"]}
        assert not before & after, "every task was replaced"
        stopped = ecs.describe_tasks(tasks=list(before))["tasks"]
        assert all(t["lastStatus"] in ("DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED") for t in stopped)

        load.mark("kill")
        # A container killed behind the load balancer: its task is replaced.
        victim = ecs.describe_tasks(tasks=ecs.list_tasks(serviceName="api")["taskArns"])["tasks"][0]
        subprocess.run(["docker", "kill", victim["containers"][0]["runtimeId"]], check=True, capture_output=True)
        wait_for(lambda: ecs.describe_tasks(tasks=[victim["taskArn"]])["tasks"][0]["lastStatus"] == "STOPPED",
                 "the killed task to stop")
        load.mark("killed task stopped")
        stable(ecs, "api")
        wait_for(lambda: len([t for t in elb.describe_target_health(TargetGroupArn=groups["api"])["TargetHealthDescriptions"]
                              if t["TargetHealth"]["State"] == "healthy"]) == 2, "two healthy api targets")

        load.mark("scale-in")
        # Scale in under load: the leaving tasks drain first.
        ecs.update_service(service="front", desiredCount=1)
        wait_for(lambda: len(ecs.list_tasks(serviceName="front")["taskArns"]) == 1, "scale-in")
        wait_for(lambda: len(elb.describe_target_health(TargetGroupArn=groups["front"])["TargetHealthDescriptions"]) == 1,
                 "the scaled-in target to be deregistered")
        time.sleep(2)
    finally:
        load.stop()
    assert load.ok > 200, load.ok
    # A container killed mid-answer loses the requests it was answering (at
    # most one per connection of the load); once its task has stopped (and
    # its target left the group), and in every other phase, nothing fails.
    phases = dict((name, at) for at, name in load.phases)
    killed = [f for f in load.failures if phases["kill"] <= f[0] <= phases["killed task stopped"]]
    others = [f for f in load.failures if f not in killed]
    assert len(killed) <= load.workers, (load.phases, killed)
    assert others == [], (load.phases, len(others), others[:3], others[-3:])


def test_a_task_failing_elb_health_checks_is_replaced(wharf_up):
    ecs, elb = wharf_up.client(), wharf_up.client("elbv2")
    wait_instance(ecs)
    lb = elb.create_load_balancer(Name="sick", Subnets=["subnet-a"])["LoadBalancers"][0]
    # The health check asks for a page the task does not serve.
    tg = fast_group(elb, "sick", 80, target_type="instance", path="/missing")
    elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=free_port(),
                        DefaultActions=forward(tg))
    ecs.create_service(serviceName="sick", taskDefinition=web_task(ecs, "sick", "/sick"), desiredCount=1,
                       healthCheckGracePeriodSeconds=0,
                       loadBalancers=[{"targetGroupArn": tg, "containerName": "web", "containerPort": 80}])
    stopped = wait_for(lambda: ecs.list_tasks(serviceName="sick", desiredStatus="STOPPED")["taskArns"],
                       "the unhealthy task to be stopped")
    task = ecs.describe_tasks(tasks=stopped)["tasks"][0]
    assert task["stoppedReason"] == f"Task failed ELB health checks in (target-group {tg})", task["stoppedReason"]
    assert task["stopCode"] == "ServiceSchedulerInitiated"
    events = [e["message"] for e in ecs.describe_services(services=["sick"])["services"][0]["events"]]
    assert any("has started 1 tasks" in m for m in events)


def test_load_balancer_survives_kill_9_of_the_server(tmp_path):
    w = Wharf(tmp_path / "data", mode="up")
    w.start()
    try:
        ecs, elb = w.client(), w.client("elbv2")
        wait_instance(ecs)
        lb = elb.create_load_balancer(Name="durable", Subnets=["subnet-a"])["LoadBalancers"][0]
        tg = fast_group(elb, "durable", 80, target_type="instance", path="/d/")
        port = free_port()
        elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=port, DefaultActions=forward(tg))
        ecs.create_service(serviceName="durable", taskDefinition=web_task(ecs, "durable", "/d"), desiredCount=2,
                           loadBalancers=[{"targetGroupArn": tg, "containerName": "web", "containerPort": 80}])
        stable(ecs, "durable")
        elb.get_waiter("target_in_service").wait(TargetGroupArn=tg, WaiterConfig={"Delay": 1})
        served = {get(port, "/d/")[2] for _ in range(6)}
        assert len(served) == 2
        containers = subprocess.run(["docker", "ps", "-q", "--filter", "label=com.amazonaws.ecs.cluster=default"],
                                    capture_output=True, text=True).stdout.split()
        w.kill()
        w2 = Wharf(tmp_path / "data", mode="up")
        w2.start()
        w = w2
        # The listener is served again from the store, to the same two containers.
        status = wait_for(lambda: get(port, "/d/")[0] == 200, "the listener to serve again", timeout=30)
        assert status
        assert {get(port, "/d/")[2] for _ in range(6)} == served
        after = subprocess.run(["docker", "ps", "-q", "--filter", "label=com.amazonaws.ecs.cluster=default"],
                               capture_output=True, text=True).stdout.split()
        assert sorted(after) == sorted(containers), "re-adopted, nothing duplicated or orphaned"
        states = [t["TargetHealth"] for t in w.client("elbv2").describe_target_health(
            TargetGroupArn=tg)["TargetHealthDescriptions"]]
        assert states == [{"State": "healthy"}] * 2, f"health verdicts survive in the store: {states}"
    finally:
        w.kill()
        remove_test_containers()


def test_draining_an_instance_under_load_moves_its_tasks_without_failed_requests(wharf, tmp_path):
    """`wharf server` and two `wharf agent` processes on one Docker daemon:
    each agent keeps to its own containers, and draining one instance
    moves its tasks to the other with the load balancer draining each
    target before its task stops."""
    ecs, elb = wharf.client(), wharf.client("elbv2")
    ecs.create_cluster(clusterName="default")
    env = dict(os.environ, WHARF_SERVER=wharf.url, WHARF_ACCESS_KEY_ID=KEY, WHARF_SECRET_ACCESS_KEY=SECRET)
    agents = []
    try:
        for name in ("one", "two"):
            token = subprocess.run([BINARY, "token", "create", "--cluster", "default"], env=env,
                                   capture_output=True, text=True, check=True).stdout.strip()
            log = open(tmp_path / f"agent-{name}.log", "ab")
            agents.append(subprocess.Popen([BINARY, "agent", "--server", wharf.url, "--token", token,
                                            "--data-dir", str(tmp_path / f"agent-{name}")],
                                           env=dict(os.environ, WHARF_LOG="warn"), stderr=log))
        instances = wait_for(lambda: (lambda a: a if len(a) == 2 else None)(
            ecs.list_container_instances()["containerInstanceArns"]), "both agents to register", timeout=30)
        lb = elb.create_load_balancer(Name="drain", Subnets=["subnet-a"])["LoadBalancers"][0]
        tg = fast_group(elb, "drain", 80, target_type="instance", path="/d/")
        elb.modify_target_group_attributes(TargetGroupArn=tg, Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": "3"}])
        port = free_port()
        elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=port,
                            DefaultActions=forward(tg))
        ecs.create_service(serviceName="drain", taskDefinition=web_task(ecs, "drain", "/d"), desiredCount=4,
                           placementStrategy=[{"type": "spread", "field": "instanceId"}],
                           loadBalancers=[{"targetGroupArn": tg, "containerName": "web", "containerPort": 80}],
                           deploymentConfiguration={"minimumHealthyPercent": 100, "maximumPercent": 200})
        stable(ecs, "drain")
        wait_for(lambda: len([t for t in elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
                              if t["TargetHealth"]["State"] == "healthy"]) == 4, "four healthy targets")

        def tasks_on(instance):
            arns = ecs.list_tasks(containerInstance=instance, desiredStatus="RUNNING")["taskArns"]
            return ecs.describe_tasks(tasks=arns)["tasks"] if arns else []
        drained, kept = instances
        assert len(tasks_on(drained)) == 2 and len(tasks_on(kept)) == 2, "spread over both instances"
        leaving = {t["taskArn"] for t in tasks_on(drained)}
        # Both agents have passed over each other's containers many times.
        running = subprocess.run(["docker", "ps", "-q", "--filter", "label=com.amazonaws.ecs.cluster=default"],
                                 capture_output=True, text=True).stdout.split()
        assert len(running) == 4, running

        load = Load(port, ["/d/"])
        load.start()
        try:
            time.sleep(1)
            load.mark("drain")
            ecs.update_container_instances_state(containerInstances=[drained], status="DRAINING")
            wait_for(lambda: not tasks_on(drained) and len(tasks_on(kept)) == 4,
                     "the drained instance's tasks to move", timeout=120)
            stable(ecs, "drain")
            wait_for(lambda: {t["TargetHealth"]["State"] for t in elb.describe_target_health(
                TargetGroupArn=tg)["TargetHealthDescriptions"]} == {"healthy"}, "only healthy targets")
            time.sleep(1)
        finally:
            load.stop()
        assert load.ok > 100, load.ok
        assert load.failures == [], (load.phases, len(load.failures), load.failures[:3])
        stopped = wait_for(lambda: (lambda ts: ts if {t["lastStatus"] for t in ts} == {"STOPPED"} else None)(
            ecs.describe_tasks(tasks=list(leaving))["tasks"]), "the moved tasks to stop", timeout=30)
        assert {(t["stopCode"], t["stoppedReason"]) for t in stopped} == {
            ("ServiceSchedulerInitiated", "Container instance is not ACTIVE")}, stopped
        described = ecs.describe_container_instances(containerInstances=[drained])["containerInstances"][0]
        assert described["status"] == "DRAINING" and described["runningTasksCount"] == 0
        targets = elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
        assert len(targets) == 4
    finally:
        for a in agents:
            a.kill()
            a.wait()
        remove_test_containers()
