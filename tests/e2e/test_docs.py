"""The README is the user's manual: every setting each binary prints with --help, and
every error sentence the gateway can send, must be documented in it."""
import os
import re
import subprocess

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("SB_BUILD_DIR", os.path.join(ROOT, "build"))
README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
BINARIES = ["gateway", "auth-svc", "chat-svc", "notify-svc", "sbctl"]


def help_options(binary):
    out = subprocess.run([os.path.join(BUILD, binary, binary), "--help"], capture_output=True,
                         text=True, timeout=10, check=True).stdout
    rows = re.findall(r"^\s+--(\S+)\s+(SB_\w+)?", out, re.M)
    assert rows, f"{binary} --help lists no options"
    return [(f"--{flag}", env) for flag, env in rows if flag != "help"]


@pytest.mark.parametrize("binary", BINARIES)
def test_every_setting_is_documented(binary):
    missing = [f"{flag} ({env})" for flag, env in help_options(binary)
               if f"`{flag}`" not in README or (env and f"`{env}`" not in README)]
    assert not missing, f"README lacks {binary} settings: {missing}"


def test_every_error_sentence_is_documented():
    header = open(os.path.join(ROOT, "gateway", "frame.h"), encoding="utf-8").read()
    sentences = re.findall(r'#define GW_E_\w+\s+"([^"]+)"', header)
    assert len(sentences) >= 10
    missing = [s for s in sentences if f"`{s}`" not in README]
    assert not missing, f"README lacks error sentences: {missing}"


def test_every_notify_rejection_reason_is_documented():
    src = open(os.path.join(ROOT, "notify-svc", "injection.c"), encoding="utf-8").read()
    reasons = re.findall(r'\[NOTIFY_E_\w+\] = \{"\w+", "([^"]+)"\}', src)
    assert len(reasons) >= 10
    missing = [r for r in reasons if f"`{r}`" not in README and r != "unsupported subject"]
    assert not missing, f"README lacks notification rejection reasons: {missing}"
