"""The image build, proven without a container engine.

deploy/Dockerfile's build stage runs scripts/build-release.sh; these tests run that same
line (prefix and build directory moved under SB_BUILD_DIR), then check what the runtime
stages need from it: every binary is installed and starts, every shared library it links
comes from a package the runtime stage installs, and the build stage installs the same
build dependencies as scripts/deps.sh (which this machine built with).
"""
import os
import re
import subprocess

import pytest

from deploylib import (BINARIES, DOCKERFILE, HEALTHCHECK, REPO, SERVICES, apt_packages,
                       build_release, dockerfile_stages, image_config, load_compose)


@pytest.fixture(scope="module")
def release():
    return build_release()


def added_to_cmake(binary):
    top = (REPO / "CMakeLists.txt").read_text()
    return re.search(rf"^\s*add_subdirectory\(\s*{re.escape(binary)}\s*\)", top, re.M)


def test_build_step_installs_every_binary(release):
    prefix, out = release
    for b in BINARIES:
        path = prefix / "bin" / b
        if not added_to_cmake(b):
            # Not part of the build yet: the script must say it skipped it.
            assert f"does not add {b}/" in out, out
            continue
        assert path.is_file() and os.access(path, os.X_OK), f"{path} missing:\n{out[-2000:]}"
        r = subprocess.run([str(path), "--help"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=10)
        assert r.returncode == 0, f"{b} --help: {r.stdout}"


def _installed_depends(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Pre-Depends}, ${Depends}", pkg],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if r.returncode != 0:
        return None
    deps = []
    for alt in r.stdout.split(","):
        # "libssl3 (>= 3.0.0)" / "a | b": any installed alternative will do.
        for choice in alt.split("|"):
            name = choice.strip().split(" ")[0].split(":")[0]
            if name:
                deps.append(name)
                break
    return deps


def _closure(pkgs):
    seen, todo = set(), list(pkgs)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        todo += _installed_depends(p) or []
    return seen


def _variants(path):
    names = set()
    for p in (path, os.path.realpath(path)):
        bare = p[4:] if p.startswith("/usr/") else p
        names |= {bare, "/usr" + bare}
    return names


def _files_of(pkg):
    """Files a installed package owns, from dpkg's database (no dpkg -S per library)."""
    import glob
    files = set()
    for lst in glob.glob(f"/var/lib/dpkg/info/{pkg}.list") + \
            glob.glob(f"/var/lib/dpkg/info/{pkg}:*.list"):
        with open(lst) as f:
            files |= {line.rstrip("\n") for line in f}
    return files


def _package_of(path):
    """The Debian package that owns a library path (merged /usr or not), for messages."""
    r = subprocess.run(["dpkg", "-S", os.path.realpath(path)], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    return r.stdout.split(":")[0] if r.stdout else "no package"


def test_runtime_stage_has_every_shared_library(release):
    prefix, _ = release
    runtime = apt_packages("runtime")
    for p in runtime:
        assert _installed_depends(p) is not None, \
            f"runtime package {p} is not installed here, so the tests cannot vouch for it"
    # libc6 is in every Debian base image; the rest must come from the runtime packages
    # or what they depend on.
    owned = set()
    for p in _closure(runtime) | {"libc6"}:
        owned |= _files_of(p)
    for b in BINARIES:
        path = prefix / "bin" / b
        if not path.exists():
            continue
        out = subprocess.run(["ldd", str(path)], stdout=subprocess.PIPE, text=True).stdout
        assert "not found" not in out, out
        for lib in re.findall(r"=>\s+(\S+)", out):
            assert _variants(lib) & owned, \
                f"{b} links {lib} ({_package_of(lib)}), which the runtime stage does not install"


def test_runtime_stage_has_the_event_loop_plugin():
    # the gateway's default --event-lib ev dlopens lws' libev plugin: ldd cannot see it
    assert "libwebsockets-evlib-ev" in apt_packages("runtime")
    assert "libwebsockets-evlib-ev" in _deps_sh_packages()


def _deps_sh_packages():
    text = (REPO / "scripts" / "deps.sh").read_text()
    m = re.search(r"PKGS=\((.*?)\)", text, re.S)
    return set(re.sub(r"#.*", "", m.group(1)).split())


def test_build_stage_installs_what_deps_sh_installs():
    build = set(apt_packages("build"))
    deps = _deps_sh_packages()
    assert build <= deps, f"the image builds with packages the tests never had: {build - deps}"
    needed = {p for p in deps if p.endswith("-dev") or p in
              ("build-essential", "cmake", "pkg-config", "protobuf-c-compiler")}
    assert needed <= build, f"the build stage lacks build dependencies: {needed - build}"


def test_service_images():
    stages = dockerfile_stages()
    compose = load_compose()
    for name, svc in compose["services"].items():
        target = (svc.get("build") or {}).get("target")
        assert target in stages, f"compose service {name}: no Dockerfile target {target}"
        assert (svc.get("build") or {}).get("dockerfile") == "deploy/Dockerfile"
    for svc in SERVICES:
        cfg = image_config(svc)
        assert cfg["entrypoint"] == [svc], f"{svc}: ENTRYPOINT {cfg['entrypoint']}"
        assert any(f"/bin/{svc} " in c for c in cfg["copies"]), f"{svc}: binary not copied"
        assert any("/bin/sbctl " in c for c in cfg["copies"]), f"{svc}: no sbctl inside"
        assert cfg["base"].startswith("debian:bookworm"), cfg["base"]
    for target in SERVICES + ["nats"]:
        cfg = image_config(target)
        user = (cfg["user"] or "").split(":")[0]
        assert user.isdigit() and int(user) != 0, f"{target}: USER {cfg['user']} (numeric, non-root)"
        assert cfg["healthcheck"] and cfg["healthcheck"][0] == "sb-healthcheck", target
    assert os.access(HEALTHCHECK, os.X_OK), "deploy/healthcheck.sh must be executable"
    # Nothing but Debian's packages: every stage starts from Debian bookworm.
    for name, st in stages.items():
        assert st["from"] in stages or st["from"].startswith("debian:bookworm"), (name, st)
    text = DOCKERFILE.read_text()
    assert not re.search(r"\b(curl|wget|ADD\s+https?://)", text), "no downloads in the build"
    # A `# syntax=` directive makes BuildKit pull a frontend image from a registry.
    assert not re.search(r"^#\s*syntax\s*=", text, re.M | re.I), "no syntax directive"
