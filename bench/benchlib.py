"""What the benchmark scripts share: keys, the test image, starting the
binary and waiting for it, and removing the containers a run made."""
import os
import socket
import subprocess
import time
import urllib.request

KEY, SECRET = "AKIABENCH", "bench-secret"
IMAGE = "wharf-test/busybox:latest"


def default_binary():
    """The release build, unless WHARF_BIN names another."""
    target = os.environ.get("CARGO_TARGET_DIR", "/var/tmp/wharf-target")
    return os.environ.get("WHARF_BIN", os.path.join(target, "release", "wharf"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env():
    """The environment a run's wharf processes get: the bench keys, quiet logs."""
    return dict(os.environ, WHARF_ACCESS_KEY_ID=KEY, WHARF_SECRET_ACCESS_KEY=SECRET, WHARF_LOG="warn")


def wait_healthy(url, timeout=10):
    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=0.2)
            return
        except OSError:
            if time.time() > deadline:
                raise RuntimeError(f"wharf at {url} did not start")
            time.sleep(0.02)


def remove_containers(label_filter):
    """Removes every container matching `label=...` (what a run left)."""
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={label_filter}"],
                         capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


def start_agent(binary, url, cluster, data_dir, env, *extra):
    """`wharf agent` joined to `cluster` with a join token (made with the
    bench keys, as an operator makes one), as hosts join."""
    token = subprocess.run([binary, "token", "create", "--server", url, "--cluster", cluster],
                           env=env, capture_output=True, text=True, check=True).stdout.split()[0]
    return subprocess.Popen([binary, "agent", "--server", url, "--token", token, "--data-dir", data_dir, *extra],
                            env=env, stderr=subprocess.DEVNULL)
