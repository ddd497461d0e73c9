"""Starts the real `wharf` binary and hands tests boto3 clients for it."""
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.request

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest

KEY = "AKIATESTKEY"
SECRET = "test-secret"
REGION = "eu-west-1"
BINARY = os.environ.get("WHARF_BIN", "/var/tmp/wharf-target/debug/wharf")
# ECS is regional: every wharf process and CLI a test starts (`wharf up`'s
# host, agents, `wharf token`, `wharf exec`, the aws CLI) works in the
# region the boto3 clients sign for.
os.environ["AWS_DEFAULT_REGION"] = REGION


def wait_for(check, what, timeout=60):
    """Polls `check` until it returns something truthy, and returns that."""
    deadline = time.time() + timeout
    while not (got := check()):
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)
    return got


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Wharf:
    def __init__(self, data_dir, mode="server", env=None, args=(), tls=False, keys=True):
        self.mode = mode
        self.extra_env = env or {}
        self.args = list(args)
        self.data_dir = data_dir
        self.port = free_port()
        self.tls = tls
        self.keys = keys
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.proc = None
        self.ca = None

    def start(self):
        env = dict(os.environ, **{"WHARF_LOG": "warn", **self.extra_env})
        if self.keys:
            env.update(WHARF_ACCESS_KEY_ID=KEY, WHARF_SECRET_ACCESS_KEY=SECRET)
        # The server's log goes to a file beside its data (an unread pipe would
        # eventually block it); pytest shows where on failure.
        self.log = open(os.path.join(os.path.dirname(str(self.data_dir)), f"wharf-{self.mode}.log"), "ab")
        self.proc = subprocess.Popen(
            [BINARY, self.mode, "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir), *self.args],
            env=env, stderr=self.log, stdout=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                context = None
                if self.tls:
                    # `--tls self-signed` writes its CA before serving.
                    self.ca = self.ca or str(self.data_dir / "tls" / "ca.pem")
                    context = ssl.create_default_context(cafile=self.ca)
                urllib.request.urlopen(self.url + "/healthz", timeout=0.2, context=context)
                return
            except (OSError, ssl.SSLError):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"wharf exited with {self.proc.returncode}")
                time.sleep(0.02)
        raise RuntimeError("wharf did not start")

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def client(self, service="ecs"):
        return boto3.client(service, endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                            verify=self.ca if self.tls else None)

    def signed_call(self, target, payload, key=KEY, secret=SECRET):
        """A signed JSON 1.1 call, as the aws CLI makes it."""
        body = json.dumps(payload)
        req = botocore.awsrequest.AWSRequest(method="POST", url=self.url + "/", data=body, headers={
            "X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"})
        botocore.auth.SigV4Auth(botocore.credentials.Credentials(key, secret), "ecs", REGION).add_auth(req)
        prepared = req.prepare()
        r = urllib.request.Request(prepared.url, data=body.encode(), headers=dict(prepared.headers), method="POST")
        with urllib.request.urlopen(r, timeout=40, context=self.ssl_context()) as resp:
            return json.loads(resp.read())

    def ssl_context(self):
        return ssl.create_default_context(cafile=self.ca) if self.tls else None

    def create_token(self, cluster="default", **extra):
        return self.signed_call("WharfAdmin_v1.CreateJoinToken", {"cluster": cluster, **extra})

    def join(self, token):
        """Presents a join token, as `wharf agent --token` does: agent credentials."""
        body = json.dumps({"token": token}).encode()
        r = urllib.request.Request(self.url + "/", data=body, method="POST", headers={
            "X-Amz-Target": "WharfAgent_v1.Join", "Content-Type": "application/x-amz-json-1.1"})
        with urllib.request.urlopen(r, timeout=10, context=self.ssl_context()) as resp:
            out = json.loads(resp.read())
        return out["accessKeyId"], out["secretAccessKey"]

    def agent_credentials(self, cluster="default"):
        return self.join(self.create_token(cluster)["token"])

    def agent_call(self, op, payload, creds):
        """A call of the agent protocol, signed with agent credentials as a host agent makes it."""
        return self.signed_call(f"WharfAgent_v1.{op}", payload, *creds)

    def client_with(self, creds, service="ecs"):
        return boto3.client(service, endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=creds[0], aws_secret_access_key=creds[1],
                            verify=self.ca if self.tls else None)


@pytest.fixture
def wharf(tmp_path):
    w = Wharf(tmp_path / "data")
    w.start()
    yield w
    w.kill()


def run_up(tmp_path, env=None):
    """`wharf up` with `env` added to its environment; a fixture yields from
    it, so the test's containers are removed when it is done."""
    w = Wharf(tmp_path / "data", mode="up", env=env)
    w.start()
    yield w
    w.kill()
    remove_test_containers()


def remove_test_containers():
    """Stopped tasks keep their containers (as ECS does until cleanup): removes the test's."""
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", "label=com.amazonaws.ecs.cluster=default"],
                         capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


@pytest.fixture
def wharf_up(tmp_path):
    """`wharf up`: control plane plus an agent on the local Docker Engine."""
    yield from run_up(tmp_path)


@pytest.fixture
def ecs(wharf):
    return wharf.client()
