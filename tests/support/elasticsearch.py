"""Session fixtures for a real Elasticsearch server.

``elasticsearch_server`` -> the server's URL (one node per test run, started on first use and
stopped at the end, or the server named by ``PIXELHUB_TEST_ELASTICSEARCH_URL``);
``elasticsearch_index_url`` -> a search URL with a fresh index prefix for one test (its indexes
are deleted afterwards).

How CI (and this module) runs Elasticsearch 8.19.7 -- Elastic's integration-test distribution from
Maven Central, which runs on the default Java 17 (PEERS.md, "Search and storage engines")::

    mvn -q dependency:copy \\
        -Dartifact=org.elasticsearch.distribution.integ-test-zip:elasticsearch:8.19.7:zip \\
        -DoutputDirectory=/tmp/esfetch
    unzip -q /tmp/esfetch/elasticsearch-8.19.7.zip -d .cache/    # .cache/ is gitignored
    chmod -R a+rX .cache/elasticsearch-8.19.7
    D=$(mktemp -d); mkdir $D/data $D/logs $D/tmp; cp -r .cache/elasticsearch-8.19.7/config $D/conf
    chown -R nobody $D                      # Elasticsearch refuses to run as root
    ES_JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 ES_PATH_CONF=$D/conf ES_TMPDIR=$D/tmp \\
    ES_JAVA_OPTS="-Xms512m -Xmx512m" runuser -u nobody -- \\
        .cache/elasticsearch-8.19.7/bin/elasticsearch \\
        -E discovery.type=single-node -E path.data=$D/data -E path.logs=$D/logs \\
        -E http.host=127.0.0.1 -E http.port=9200 -E transport.port=9300 \\
        -E xpack.security.enabled=false \\
        -E cluster.routing.allocation.disk.threshold_enabled=false \\
        -E action.destructive_requires_name=false
    curl 'http://127.0.0.1:9200/_cluster/health?wait_for_status=yellow&timeout=60s'

It starts in about 12 s. The distribution has only the ``x-pack-core``, ``x-pack-security``,
``apm`` and ``transport-netty4`` modules: no ``analysis-common`` (so no ``asciifolding``), no
``wildcard`` field type, no painless -- the adapter relies on none of them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import ServerError, free_port, server_for_run

VERSION = "8.19.7"
ARTIFACT = f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{VERSION}:zip"
CACHE = Path(__file__).resolve().parents[2] / ".cache"
HOME = CACHE / f"elasticsearch-{VERSION}"
START_TIMEOUT = 180.0


def _java_home() -> str:
    if os.environ.get("ES_JAVA_HOME"):
        return os.environ["ES_JAVA_HOME"]
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    java = shutil.which("java")
    if java is None:
        raise ServerError("Elasticsearch needs Java 17+ (no java on PATH, no JAVA_HOME)")
    return str(Path(java).resolve().parent.parent)


def _unpack() -> Path:
    """The unpacked distribution in ``.cache/``, fetched from Maven Central on first use."""
    if (HOME / "bin" / "elasticsearch").exists():
        return HOME
    CACHE.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as fetch:
        zip_path = Path(fetch) / f"elasticsearch-{VERSION}.zip"
        fetched = subprocess.run(
            [
                "mvn",
                "-q",
                "dependency:copy",
                f"-Dartifact={ARTIFACT}",
                f"-DoutputDirectory={fetch}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if fetched.returncode != 0:
            raise ServerError(f"fetching {ARTIFACT} failed:\n{fetched.stdout}{fetched.stderr}")
        staging = Path(tempfile.mkdtemp(dir=CACHE))
        subprocess.run(["unzip", "-q", str(zip_path), "-d", str(staging)], check=True)
        (staging / HOME.name).rename(HOME)
        staging.rmdir()
    subprocess.run(["chmod", "-R", "a+rX", str(HOME)], check=True)
    return HOME


def _reachable_by_all(path: Path) -> bool:
    """Whether every directory above ``path`` lets other users through (``o+x``)."""
    return all(parent.stat().st_mode & 0o001 for parent in path.resolve().parents)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(
            f"{url}/_cluster/health?wait_for_status=yellow&timeout=1s", timeout=5
        ) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _log_tail(path: Path) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-40:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def running_elasticsearch(heap: str = "512m") -> Iterator[str]:
    """A single-node server on free loopback ports for as long as the block runs, as an
    unprivileged user when run as root; yields ``http://127.0.0.1:PORT``. Used by the fixtures
    and by the benchmarks."""
    home = _unpack()
    work = Path(tempfile.mkdtemp(prefix="pixelhub-es-"))
    for sub in ("data", "logs", "tmp"):
        (work / sub).mkdir()
    shutil.copytree(home / "config", work / "conf")
    if os.geteuid() == 0:  # Elasticsearch refuses root
        if not _reachable_by_all(home):  # a checkout under a private dir (``mktemp -d``)
            home = Path(shutil.copytree(home, work / "home", symlinks=True))
        subprocess.run(["chown", "-R", "nobody", str(work)], check=True)
        work.chmod(0o755)
        command = ["runuser", "-u", "nobody", "--", str(home / "bin" / "elasticsearch")]
    else:
        command = [str(home / "bin" / "elasticsearch")]
    http_port, transport_port = free_port(), free_port()
    settings = {
        "discovery.type": "single-node",
        "path.data": work / "data",
        "path.logs": work / "logs",
        "http.host": "127.0.0.1",
        "http.port": http_port,
        "transport.port": transport_port,
        "xpack.security.enabled": "false",
        "cluster.routing.allocation.disk.threshold_enabled": "false",
        "action.destructive_requires_name": "false",
    }
    for name, value in settings.items():
        command += ["-E", f"{name}={value}"]
    env = {
        **os.environ,
        "ES_JAVA_HOME": _java_home(),
        "ES_PATH_CONF": str(work / "conf"),
        "ES_TMPDIR": str(work / "tmp"),
        "ES_JAVA_OPTS": f"-Xms{heap} -Xmx{heap}",
    }
    log = work / "console.log"
    url = f"http://127.0.0.1:{http_port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise ServerError(f"Elasticsearch did not start:\n{_log_tail(log)}")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def elasticsearch_server() -> Iterator[str]:
    """One node for the whole run (or ``PIXELHUB_TEST_ELASTICSEARCH_URL``)."""
    yield from server_for_run("PIXELHUB_TEST_ELASTICSEARCH_URL", running_elasticsearch)


@pytest.fixture
def elasticsearch_index_url(elasticsearch_server: str) -> Iterator[str]:
    """``<server>/t<uuid hex>``: a fresh index prefix; its indexes are deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex}"
    yield f"{elasticsearch_server}/{prefix}"
    request = urllib.request.Request(
        f"{elasticsearch_server}/{prefix}-*?expand_wildcards=all&allow_no_indices=true",
        method="DELETE",
    )
    with (
        contextlib.suppress(urllib.error.URLError, OSError),
        urllib.request.urlopen(request, timeout=30),
    ):
        pass
