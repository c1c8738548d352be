"""Helpers shared by the tests that run the command line as a subprocess on hostile input
(test_hostile_inputs.py, test_hostile_commands.py) and by those that start a local server."""
from __future__ import annotations

import hashlib
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "BreastTumorSeg"
EXAM_CASE = "phantom_0003"  # the case id of write_small_exam's exam
SEG = ["segment", "--model", "ftv", "--no-register", "--quiet"]
KIN = ["kinetics", "--no-register", "--quiet", "--whole-volume"]


def write_small_exam(folder: Path) -> Path:
    """A small phantom exam (20 x 15 x 10 voxels of 3 mm, 3 phases) without its truth files."""
    from BreastTumorSegLib.training.phantom import make_phantom, write_phantom

    write_phantom(make_phantom(3, shape_mm=(60, 45, 30), spacing=3.0, n_phases=3), folder)
    for extra in folder.glob("*_t*.*"):  # truth files: not part of the exam
        extra.unlink()
    return folder


def snapshot(root: Path) -> dict[str, str]:
    """Every entry below *root*: regular files by content hash, others by kind (never opened)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "link:" + os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(p, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        h.update(chunk)
                out[rel] = h.hexdigest() if st.st_size < (64 << 20) else f"sparse:{st.st_size}:{st.st_mtime_ns}"
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = "dir"
            else:
                out[rel] = f"special:{stat.S_IFMT(st.st_mode)}"
    return out


def run_in_folder(folder: Path, argv: list[str], timeout_s: float, env: dict | None = None) -> dict:
    """``python -m BreastTumorSegLib.cli ARGV`` with *folder* as the working directory: its exit code
    ("timeout" when it ran past *timeout_s*), stderr, the folder's :func:`snapshot` before and after,
    and the seconds it took."""
    env = {**os.environ, "PYTHONPATH": str(PKG), "MPLBACKEND": "Agg", **(env or {})}
    before = snapshot(folder)
    t0 = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "BreastTumorSegLib.cli", *argv], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
        rc, err = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired:
        rc, err = "timeout", ""
    return {"argv": argv, "rc": rc, "stderr": err, "before": before, "after": snapshot(folder),
            "seconds": time.monotonic() - t0}


def run_hostile_case(spec: dict, name: str, root: Path, given, timeout_s: float) -> dict:
    """One case of the hostile-command sweeps: a fresh folder ``root/name``, the case's argv built by
    ``spec["build"](folder, given)``, run by :func:`run_in_folder` with a private home and one thread."""
    folder = root / name
    folder.mkdir()
    env = {"MPLCONFIGDIR": str(root / "_mpl"), "BREASTTUMORSEG_HOME": str(folder / "home"), "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    argv = [str(a) for a in spec["build"](folder, given)]
    return {**run_in_folder(folder, argv, timeout_s, env), **spec, "folder": folder}


def check_hostile_result(r: dict, quiet_when_accepted: bool = True) -> None:
    """What every hostile command must do. A refusal (``r["changes"] is None``): exit 2, one stderr line with
    "error:" and "Fix:" that mentions ``r["expect"]``, no file created, changed or removed. An accepted input:
    exit 0, ``r["expect"]`` mentioned (not merely as part of the case folder's name), nothing written outside
    ``r["changes"]``, and (*quiet_when_accepted*, the third and later sweeps) no error line on stderr. Never a
    traceback or a hang."""
    cmd = "breasttumorseg " + " ".join(r["argv"])
    assert r["rc"] != "timeout", f"hang: {cmd}"
    assert "Traceback" not in r["stderr"] and "Fatal Python error" not in r["stderr"], f"{cmd}\n{r['stderr']}"
    changed = {k for k in set(r["before"]) | set(r["after"]) if r["before"].get(k) != r["after"].get(k)}
    lines = [ln for ln in r["stderr"].splitlines() if ln.strip() and not ln.startswith("[")]
    if r["changes"] is None:
        assert r["rc"] == 2, f"exit {r['rc']}: {cmd}\n{r['stderr']}"
        assert len(lines) == 1, f"{cmd}: expected one line, got:\n{r['stderr']}"
        assert "error:" in lines[0] and "Fix:" in lines[0], lines[0]
        shown = lines[0].replace(f"{r['folder']}{os.sep}", "")  # the case folder's name must not match
        assert r["expect"].lower() in shown.lower(), f"{cmd}: message should mention {r['expect']!r}: {lines[0]}"
        assert not changed, f"{cmd}: files created, changed or removed: {sorted(changed)}"
    else:
        assert r["rc"] == 0, f"exit {r['rc']}: {cmd}\n{r['stderr']}"
        if quiet_when_accepted:
            assert not any("error" in ln.lower() for ln in lines), f"{cmd}: errors on stderr:\n{r['stderr']}"
        shown = r["stderr"].replace(f"{r['folder']}{os.sep}", "")
        assert r["expect"].lower() in shown.lower(), f"{cmd}: stderr should mention {r['expect']!r}"
        outside = sorted(k for k in changed if k != r["changes"] and not k.startswith(r["changes"] + os.sep))
        assert not outside, f"{cmd}: wrote outside {r['changes']}: {outside}"


def case_registry(cases: dict):
    """The ``@case(name, expect, changes=None)`` decorator of a hostile sweep, registering into
    *cases*: *expect* is text the one stderr line must hold (exit 2); *changes* the only path that
    may change when the command must work (exit 0); the builder's docstring says what it tries."""
    def case(name: str, expect: str, changes: str | None = None):
        def deco(fn):
            cases[name] = {"build": fn, "expect": expect, "changes": changes, "what": (fn.__doc__ or name).strip()}
            return fn
        return deco
    return case


def run_hostile_cases(cases: dict, root: Path, given, timeout_s: float, names=None) -> dict:
    """Every case of *cases* (or the *names* given), two at a time, by :func:`run_hostile_case`:
    name -> result, in order."""
    from concurrent.futures import ThreadPoolExecutor

    names = list(cases) if names is None else list(names)
    with ThreadPoolExecutor(2) as pool:
        return dict(zip(names, pool.map(lambda n: run_hostile_case(cases[n], n, root, given, timeout_s), names)))


def print_hostile_cases(results: dict, root: Path) -> None:
    """One line per case: its name, exit code, verdict (OK or FAIL and why) and what it printed
    (the table of docs/hostile-inputs-N.md)."""
    for name, r in results.items():
        try:
            check_hostile_result(r)
            verdict = "OK"
        except AssertionError as exc:
            verdict = "FAIL " + str(exc).splitlines()[0][:300]
        lines = [ln for ln in r["stderr"].splitlines() if ln.strip() and not ln.startswith("[")]
        if "Traceback" in r["stderr"]:
            msg = "TRACEBACK: " + lines[-1]
        else:
            msg = " / ".join(lines[-2:]) if len(lines) > 1 else (lines[0] if lines else "")
        msg = msg.replace(f"{root / name}{os.sep}", "").replace(str(root), "...")
        print(f"{name}\t{r['rc']}\t{verdict}\t{msg[:420]}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
