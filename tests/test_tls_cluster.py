"""A secured Dask cluster: TLS with client certificates, and clients without one refused.

A Dask scheduler runs whatever code its clients send, so a cluster reachable by others must
demand a certificate signed by the cluster's own CA. The test makes a CA and one certificate for
127.0.0.1 with `openssl`, starts a `dask scheduler --protocol tls` and one `dask worker` that
both require it, runs `hicl-pipeline run --scheduler tls://... --security FILE` (stores equal an
in-process run's), takes the TLS files from Dask's own config instead, and checks that a client
without the certificate, over tcp://, or with a certificate of another CA is refused at once.
"""
from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_distributed import BIN, TOY_STAGES, assert_same_stores, free_port, local_run, stop

CLI_ENV = {**os.environ, "COLUMNS": "400", "NO_COLOR": "1"}
REFUSED_WITHIN_S = 20.0  # every refusal below is immediate; Dask's connect timeout is 30 s


def openssl(*args: object, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def make_certificates(folder: Path) -> dict[str, Path]:
    """A self-signed CA, a key and certificate for 127.0.0.1 signed by it (server and client use),
    and a self-signed certificate for 127.0.0.1 from no CA the cluster knows."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=hicl test CA",
            "-keyout", "ca.key", "-out", "ca.pem", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "node.key",
            "-out", "node.csr", cwd=folder)
    (folder / "node.ext").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                                     "extendedKeyUsage=serverAuth,clientAuth\n")
    openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "node.ext", "-out", "node.pem", cwd=folder)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", "other.key", "-out", "other.pem", cwd=folder)
    return {name: folder / name for name in ("ca.pem", "node.pem", "node.key", "other.pem", "other.key")}


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory) -> Iterator[dict]:
    """`dask scheduler --protocol tls` + one `dask worker`, both requiring certificates of the test CA."""
    from dask.distributed import Client
    from distributed.security import Security

    logs = tmp_path_factory.mktemp("dask-tls")  # also the worker's working directory
    certs = make_certificates(tmp_path_factory.mktemp("certs"))
    tls = ["--tls-ca-file", certs["ca.pem"], "--tls-cert", certs["node.pem"], "--tls-key", certs["node.key"]]
    port = free_port()
    address = f"tls://127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []
    try:
        procs.append(subprocess.Popen(
            [BIN / "dask", "scheduler", "--protocol", "tls", "--host", "127.0.0.1", "--port", str(port),
             "--no-dashboard", *tls], cwd=logs, stdout=subprocess.DEVNULL,
            stderr=(logs / "scheduler.log").open("w")))
        procs.append(subprocess.Popen(
            [BIN / "dask", "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
             "--host", "127.0.0.1", "--name", "w0", *tls],
            cwd=logs, stdout=subprocess.DEVNULL, stderr=(logs / "worker0.log").open("w")))
        security = Security(require_encryption=True, tls_ca_file=str(certs["ca.pem"]),
                            tls_client_cert=str(certs["node.pem"]), tls_client_key=str(certs["node.key"]))
        with Client(address, security=security, timeout=60) as client:
            client.wait_for_workers(1, timeout=60)
            workers = sorted(client.scheduler_info()["workers"])
        yield {"address": address, "port": port, "certs": certs, "workers": workers, "logs": logs}
    finally:
        stop(procs)


def hicl_run(toy: dict, cwd: Path, store_root: Path, *args: object, env: dict | None = None,
             ) -> subprocess.CompletedProcess:
    """`hicl-pipeline run` of the toy graph from ``cwd`` (relative data root, as a user on a cluster)."""
    cmd = [BIN / "hicl-pipeline", "run", "--dataset", "toy", "--data-root", "raw", "--store-root", store_root,
           "--stages-file", toy["stages"], *args]
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env=env or CLI_ENV)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one `error:` line of a refused run (exit code 2, no traceback)."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    return lines[0]


def test_pipeline_over_tls_equals_a_local_run(toy, tls_cluster, tmp_path):
    """--security FILE (paths relative to the file): the run succeeds on the worker, same stores."""
    certs = tls_cluster["certs"]
    security = certs["ca.pem"].parent / "security.yaml"
    security.write_text("tls_ca_file: ca.pem\ntls_client_cert: node.pem\ntls_client_key: node.key\n")
    local_run(toy, str(tmp_path / "local"))
    result = hicl_run(toy, tmp_path, tmp_path / "dist", "--scheduler", tls_cluster["address"],
                      "--security", security)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_same_stores(str(tmp_path / "dist"), str(tmp_path / "local"), TOY_STAGES)


def test_dask_tls_config_is_taken_without_security(toy, tls_cluster, tmp_path):
    """No --security: the client takes Dask's distributed.comm.tls config (here from the environment)."""
    certs = tls_cluster["certs"]
    env = {**CLI_ENV, "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
           "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(certs["ca.pem"]),
           "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str(certs["node.pem"]),
           "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": str(certs["node.key"])}
    local_run(toy, str(tmp_path / "local"))
    result = hicl_run(toy, tmp_path, tmp_path / "dist", "--scheduler", tls_cluster["address"], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_same_stores(str(tmp_path / "dist"), str(tmp_path / "local"), TOY_STAGES)


@pytest.mark.parametrize("how, reason", [
    ("no certificate", "TLS expects a `ssl_context` argument of type ssl.SSLContext"),
    ("tcp://", "Connection reset by peer"),
    ("certificate of another CA", "TLS certificate does not match"),
])
def test_client_without_the_certificate_is_refused(how, reason, toy, tls_cluster, tmp_path):
    """Refused at once with one line naming the scheduler; the worker ran nothing of it."""
    certs, address = tls_cluster["certs"], tls_cluster["address"]
    args: list[object] = ["--scheduler", address]
    if how == "tcp://":
        address = f"tcp://127.0.0.1:{tls_cluster['port']}"
        args = ["--scheduler", address]
    elif how == "certificate of another CA":
        foreign = tmp_path / "foreign.json"
        foreign.write_text(f'{{"tls_ca_file": "{certs["other.pem"]}", "tls_client_cert": "{certs["other.pem"]}", '
                           f'"tls_client_key": "{certs["other.key"]}"}}')
        args += ["--security", foreign]
    start = time.monotonic()
    result = hicl_run(toy, tmp_path, tmp_path / "dist", *args)
    assert time.monotonic() - start < REFUSED_WITHIN_S
    line = error_line(result)
    assert line.startswith(f"error: cannot reach the Dask scheduler at {address}: "), line
    assert reason in line, line
    if how == "no certificate":
        assert line.endswith("; a tls:// scheduler needs --security FILE or Dask's distributed.comm.tls config")
    assert not list((tmp_path / "dist").glob("*.zarr"))


@pytest.mark.parametrize("content, message", [
    ("tls_ca_file: ca.pem\ntls_client_cert: node.pem\n", "'tls_client_key' must name a file"),
    ("tls_ca_file: ca.pem\ntls_client_cert: node.pem\ntls_client_key: node.key\ntls_key: x\n",
     "unknown key 'tls_key' (allowed: tls_ca_file, tls_client_cert, tls_client_key)"),
    ("tls_ca_file: missing.pem\ntls_client_cert: node.pem\ntls_client_key: node.key\n",
     "tls_ca_file {folder}/missing.pem does not exist"),
], ids=["key missing", "unknown key", "file missing"])
def test_bad_security_file_is_one_line(content, message, toy, tmp_path):
    """A security file that names no usable certificate stops the run before it connects."""
    security = tmp_path / "security.yaml"
    security.write_text(content)
    result = hicl_run(toy, tmp_path, tmp_path / "dist", "--scheduler", "tls://127.0.0.1:1", "--security", security)
    assert error_line(result) == f"error: --security {security}: {message.format(folder=tmp_path)}"


def test_weights_preflight_runs_on_the_workers(toy, tls_cluster, tmp_path):
    """A CLIP stage's weights are looked for where its tasks run: the error names the worker."""
    clip_params = ("      model_name: {type: str, default: ViT-B-16}\n"
                   "      pretrained: {type: str, default: openai}\n"
                   "      checkpoint: {type: str, default: null, nullable: true}\n"
                   "      model_config: {type: dict, default: null, nullable: true}\n")
    text = toy["stages"].read_text()
    assert text.count("      sleep: {type: float, default: 0.0}\n    variants:") == 1
    toy["stages"].write_text(text.replace("      sleep: {type: float, default: 0.0}\n    variants:",
                                          "      sleep: {type: float, default: 0.0}\n" + clip_params + "    variants:"))
    certs = tls_cluster["certs"]
    security = tmp_path / "security.yaml"
    security.write_text(f"tls_ca_file: {certs['ca.pem']}\ntls_client_cert: {certs['node.pem']}\n"
                        f"tls_client_key: {certs['node.key']}\n")
    missing = tmp_path / "ViT-B-16.pt"
    result = hicl_run(toy, tmp_path, tmp_path / "dist", "--scheduler", tls_cluster["address"], "--security",
                      security, "--set", f"double.checkpoint={missing}")
    (worker,) = tls_cluster["workers"]
    assert error_line(result) == (
        f"error: on worker {worker}: stage 'double': CLIP checkpoint {missing} (param double.checkpoint) cannot "
        "be read (No such file or directory); give a weights file on this machine for ViT-B-16")
    assert not list((tmp_path / "dist").glob("*.zarr"))
