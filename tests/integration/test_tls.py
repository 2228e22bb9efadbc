"""HTTPS with --tls-cert/--tls-key (SPEC §8), through libmicrohttpd's
GnuTLS: a self-signed certificate made at test time, verified by curl and
by Python's ssl; plain HTTP on that port gets no answer."""

import http.client
import json
import socket
import ssl
import subprocess

import pytest

from conftest import free_port, require_binary


@pytest.fixture
def cert(tmp_path):
    key, crt = str(tmp_path / "key.pem"), str(tmp_path / "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return crt, key


@pytest.fixture
def https(tmp_path, cert):
    port = free_port()
    keys = tmp_path / "keys.txt"
    keys.write_text("tls-test-key read\n")
    proc = subprocess.Popen([require_binary(), "--listen", "127.0.0.1:%d" % port, "--data-dir", str(tmp_path / "d"),
                             "--rate", "50", "--tls-cert", cert[0], "--tls-key", cert[1], "--api-keys", str(keys)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ctx = ssl.create_default_context(cafile=cert[0])
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s, ctx.wrap_socket(s, server_hostname="localhost"):
                break
        except OSError:
            import time
            time.sleep(0.05)
    yield port, ctx, cert[0]
    proc.terminate()
    assert proc.wait(timeout=20) == 0


def test_python_verifies_the_certificate_and_reads(https):
    port, ctx, _ = https
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
    conn.request("GET", "/v1/tables", headers={"Authorization": "Bearer tls-test-key"})
    r = conn.getresponse()
    assert r.status == 200 and "tables" in json.loads(r.read())
    conn.request("GET", "/v1/tables")
    r = conn.getresponse()
    assert r.status == 401
    r.read()
    conn.close()


def test_curl_verifies_the_certificate(https):
    port, _, crt = https
    out = subprocess.run(["curl", "-sS", "--cacert", crt, "https://localhost:%d/healthz" % port],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0 and json.loads(out.stdout) == {"status": "ok"}, out.stderr
    # without the certificate as a trust anchor, curl refuses the self-signed one
    out = subprocess.run(["curl", "-sS", "https://localhost:%d/healthz" % port], capture_output=True, text=True, timeout=20)
    assert out.returncode != 0


def test_plain_http_on_the_https_port_gets_no_data(https):
    port, _, _ = https
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    with pytest.raises((OSError, http.client.HTTPException)):
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        assert r.status != 200
    conn.close()


def test_sse_over_https(https):
    port, ctx, _ = https
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=15)
    conn.request("GET", "/v1/streams/gaming_real_time_intelligence_platform?limit=2&access_token=tls-test-key")
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/event-stream")
    body = r.read().decode()
    assert body.count("\ndata: {") + body.startswith("data: {") == 2
    conn.close()


def test_half_a_tls_pair_is_refused(tmp_path, cert):
    r = subprocess.run([require_binary(), "--tls-cert", cert[0]], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "go together" in r.stderr


@pytest.mark.parametrize("version, accepted", [("-tls1", False), ("-tls1_1", False), ("-tls1_2", True),
                                               ("-tls1_3", True)])
def test_only_tls_1_2_and_1_3_are_negotiated(https, version, accepted):
    port, _, _ = https
    # ALL at SECLEVEL=0: Debian's openssl would refuse TLS 1.0 and 1.1 (and their SHA-1 suites) itself;
    # this asks the server
    cipher = [] if version == "-tls1_3" else ["-cipher", "ALL:@SECLEVEL=0"]
    out = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, version] + cipher,
                         input="", capture_output=True, text=True, timeout=20)
    want = {"-tls1": "TLSv1", "-tls1_1": "TLSv1.1", "-tls1_2": "TLSv1.2", "-tls1_3": "TLSv1.3"}[version]
    # s_client names the version it asked for even when the handshake failed: a cipher says it succeeded
    negotiated = (out.returncode == 0 and ", Cipher is " in out.stdout and "Cipher is (NONE)" not in out.stdout
                  and ("Protocol  : %s\n" % want in out.stdout or "New, %s, " % want in out.stdout))
    assert negotiated == accepted, out.stdout[-1500:] + out.stderr[-1500:]


def test_the_sql_shell_verifies_the_server_with_ca_file(https, tmp_path):
    """gamingd sql over https: refused without the self-signed certificate
    (curl's verification, not skipped), answered with --ca-file."""
    port, _, crt = https
    keyfile = tmp_path / "key"
    keyfile.write_text("tls-test-key\n")
    url = "https://localhost:%d" % port
    base = [require_binary(), "sql", url, "--api-key-file", str(keyfile), "-e", "SHOW TABLES;"]
    r = subprocess.run(base, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "certificate" in r.stderr.lower(), (r.stdout, r.stderr)
    r = subprocess.run(base + ["--ca-file", crt], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "GAMING_ACTIVE_PLAYERS_5MIN" in r.stdout.upper()
