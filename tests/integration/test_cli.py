"""The command line of SPEC §2: --help, environment variables, bad flags."""

import json
import os
import subprocess
import time
import urllib.request

import pytest

from conftest import BASE_MS, free_port, require_binary, write_lines

SPEC_FLAGS = ["--listen", "--data-dir", "--source", "--brokers", "-X", "--schema-registry",
              "--schema-registry-auth", "--output", "--grace", "--retention", "--rate", "--seed",
              "--api-keys"]


def run(args, env=None, timeout=10):
    return subprocess.run([require_binary()] + args, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_help_lists_every_flag_with_its_environment_variable():
    r = run(["--help"])
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    for flag in SPEC_FLAGS:
        line = next((l for l in lines if l.strip().startswith(flag + " ")), None)
        assert line, "--help does not list %s" % flag
        if flag != "-X":
            env = "GAMINGD_" + flag[2:].upper().replace("-", "_")
            assert "[%s]" % env in line, "%s: no environment variable %s in %r" % (flag, env, line)


@pytest.mark.parametrize("args, fragment", [
    (["--no-such-flag"], "unknown flag"),
    (["--grace", "soon"], "--grace"),
    (["--retention", "0s"], "--retention"),
    (["--commit-interval", "2d"], "--commit-interval"),  # a batch may last ten times it, in ns
    (["--shutdown-timeout", "36600000d"], "--shutdown-timeout"),  # past a century: overflows as ns
    (["--listen", "nowhere"], "--listen"),
    (["--source", "ftp://x"], "--source"),
    (["--rate", "-5"], "--rate"),
    (["--data-dir"], "needs a value"),
    (["generate"], "--out"),
    (["--output", "none", "--output", "file:/tmp/x"], "--output none"),
    (["--application-id", "team a"], "--application-id"),
    (["--advertised-url", "gamingd:8080"], "--advertised-url"),
])
def test_bad_flags_are_refused_with_a_message(args, fragment):
    r = run(args)
    assert r.returncode == 2, (args, r.returncode, r.stderr)
    assert fragment in r.stderr


def _wait_ready(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % port, timeout=1) as resp:
                if resp.status == 200:
                    return json.loads(resp.read())
        except OSError:
            pass
        time.sleep(0.05)
    pytest.fail("not ready on port %d" % port)


def test_environment_variables_configure_and_flags_override_them(tmp_path):
    act = {"topic": "gaming_player_activity", "key": "a1",
           "value": {"activity_id": "a1", "player_id": "p1", "game_id": "g1",
                     "activity_type": "play", "activity_timestamp": BASE_MS}}
    src = write_lines(str(tmp_path / "in.jsonl"), [act])
    port = free_port()
    env = dict(os.environ, GAMINGD_SOURCE="file:" + src, GAMINGD_DATA_DIR=str(tmp_path / "data"),
               GAMINGD_LISTEN="127.0.0.1:1", GAMINGD_OUTPUT="file:" + str(tmp_path / "out.jsonl"))
    proc = subprocess.Popen([require_binary(), "--listen", "127.0.0.1:%d" % port], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_ready(port)["records_applied"] == 1
        assert os.path.exists(str(tmp_path / "data" / "data.mdb"))
        with open(str(tmp_path / "out.jsonl")) as f:
            assert json.loads(f.readline())["activity_id"] == "a1"
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0


def test_a_bad_environment_value_is_refused():
    r = run([], env=dict(os.environ, GAMINGD_RETENTION="forever"))
    assert r.returncode == 2 and "from the environment" in r.stderr


def test_secrets_on_the_command_line_are_blanked_and_warned_about(tmp_path):
    port = free_port()
    proc = subprocess.Popen([require_binary(), "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:%d" % port,
                             "-X", "sasl.password=hunter2", "--schema-registry-auth", "user:s3cr3t"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_ready(port)
        with open("/proc/%d/cmdline" % proc.pid, "rb") as f:
            cmdline = f.read()
        assert b"hunter2" not in cmdline and b"s3cr3t" not in cmdline, cmdline
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "visible to every local user" in err and "-F" in err
    assert "hunter2" not in err and "s3cr3t" not in err


def test_kafka_properties_from_a_file_and_secrets_never_echoed(tmp_path):
    conf = tmp_path / "kafka.properties"
    conf.write_text("# Confluent Cloud\nsecurity.protocol=SASL_SSL\n\n  sasl.password = hunter2  \nno.such.property=1\n")
    r = run(["--source", "kafka", "--brokers", "127.0.0.1:1", "--data-dir", str(tmp_path / "data"),
             "--listen", "127.0.0.1:%d" % free_port(), "-F", str(conf)], timeout=30)
    # the file was read: its unknown property is named; the secret is not shown
    assert r.returncode != 0 and "no.such.property" in r.stderr, r.stderr
    assert "hunter2" not in r.stderr
    r = run(["-F", str(tmp_path / "missing.properties")])
    assert r.returncode == 2 and "-F" in r.stderr
