#!/usr/bin/env python3
"""Checks a trace of sniwalk against the sandbox of its systemd unit.

    check-sandbox-trace.py UNIT_FILE STRACE_LOG

The container CI runs in has no systemd to apply the unit's sandbox, so
scripts/package-test.sh runs the installed binary under
`strace -f -qq -y` through its whole life (start, requests, SIGHUP,
SIGTERM) and this script checks that nothing it did would be refused by:

- SystemCallFilter= (groups expanded by `systemd-analyze syscall-filter`),
- RestrictAddressFamilies=,
- MemoryDenyWriteExecute= (no writable and executable mapping, no
  mprotect to executable),
- ProtectSystem=strict with ReadWritePaths=, StateDirectory=,
  LogsDirectory= and
  PrivateTmp= (writes only there, /tmp, and the /dev, /proc, /sys API
  trees),
- ProtectHome= (nothing under /home, /root, /run/user),
- ProcSubset=pid (under /proc, only the processes' own directories).

Only what follows the exec of /usr/bin/sniwalk counts (setpriv, which
stands in for systemd, runs before it). Prints each finding and exits 1
when there is any; prints a summary and exits 0 otherwise.
"""

import re
import subprocess
import sys

SYSCALL = re.compile(r"^\d+\s+([a-z_][a-z0-9_]*)\(")
RESUMED = re.compile(r"^\d+\s+<\.\.\. ([a-z_][a-z0-9_]*) resumed>")
EXEC = re.compile(r'^\d+\s+execve\("/usr/bin/sniwalk",.*= 0$')
# The path argument of an *at call, after its directory (shown by -y as
# `AT_FDCWD</cwd>` or `3</dir>`), and of a plain call.
AT_PATH = re.compile(r'^\((?:AT_FDCWD(?:<([^>]*)>)?|-?\d+<([^>]*)>)\s*,\s*"((?:[^"\\]|\\.)*)"')
PLAIN_PATH = re.compile(r'^\("((?:[^"\\]|\\.)*)"')
# Reads the proxy may make that the sandbox hides, each with what the
# proxy does instead.
TOLERATED = {
    "/proc/sys/kernel/hostname":
        "hidden by ProcSubset=pid: host_name() (src/storage/dir_lock.rs) reads /etc/hostname instead",
}
WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC")
WRITING_CALLS = {"mkdir", "mkdirat", "rename", "renameat", "renameat2", "unlink", "unlinkat",
                 "rmdir", "symlink", "symlinkat", "link", "linkat", "chmod", "fchmodat",
                 "chown", "fchownat", "truncate", "mknod", "mknodat"}
OPEN_CALLS = {"open", "openat", "openat2", "creat"}
PROC_PID = re.compile(r"^/proc/(self|thread-self|\d+)(/|$)")
HOME_TREES = ("/home/", "/root/", "/run/user/")
API_TREES = ("/dev/", "/proc/", "/sys/", "/tmp/", "/var/tmp/")


def unit_settings(path):
    """Every `Key=value` of the unit's [Service] section, in order."""
    settings = []
    section = None
    with open(path, encoding="utf-8") as unit:
        for line in unit:
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line
                continue
            if section == "[Service]" and "=" in line:
                key, value = line.split("=", 1)
                settings.append((key.strip(), value.strip()))
    return settings


def syscall_groups():
    """`systemd-analyze syscall-filter`: group name -> members (some @groups)."""
    text = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager"],
                          check=True, capture_output=True, text=True).stdout
    groups, current = {}, None
    for line in text.splitlines():
        if line.startswith("@"):
            current = line.split()[0]
            groups[current] = set()
        elif current and line.strip() and not line.strip().startswith("#"):
            groups[current].add(line.strip())
    return groups


def expand(names, groups, seen=None):
    seen = set() if seen is None else seen
    out = set()
    for name in names:
        if name.startswith("@"):
            if name in seen:
                continue
            seen.add(name)
            out |= expand(groups.get(name, ()), groups, seen)
        else:
            out.add(name)
    return out


def syscall_filter(settings, groups):
    """(allowed, denied): an allow list (or None) and a deny list."""
    allowed, denied = None, set()
    for key, value in settings:
        if key != "SystemCallFilter":
            continue
        invert = value.startswith("~")
        names = expand(value.lstrip("~").split(), groups)
        if invert:
            if allowed is None:
                denied |= names
            else:
                allowed -= names
        elif allowed is None and not denied:
            allowed = names
        elif allowed is None:
            denied -= names
        else:
            allowed |= names
    return allowed, denied


def writable_trees(settings):
    trees = list(API_TREES)
    for key, value in settings:
        if key == "ReadWritePaths":
            trees += [p.lstrip("-").rstrip("/") + "/" for p in value.split()]
        elif key == "StateDirectory":
            trees += ["/var/lib/" + p.rstrip("/") + "/" for p in value.split()]
        elif key == "LogsDirectory":
            trees += ["/var/log/" + p.rstrip("/") + "/" for p in value.split()]
    return trees


def path_of(call, line):
    """The absolute path a call names, or None."""
    arguments = line[line.index(call + "(") + len(call):]
    match = AT_PATH.match(arguments)
    if match:
        base, path = match.group(1) or match.group(2) or "/", match.group(3)
    else:
        match = PLAIN_PATH.match(arguments)
        if not match:
            return None
        base, path = "/", match.group(1)  # the service's working directory is /
    if path.startswith("/"):
        return path
    if not path:
        return base  # AT_EMPTY_PATH: the directory fd itself
    return base.rstrip("/") + "/" + path


def under(path, trees):
    full = path if path.endswith("/") else path + "/"
    return any(full.startswith(tree) for tree in trees)


def main():
    unit, log = sys.argv[1], sys.argv[2]
    settings = unit_settings(unit)
    allowed, denied = syscall_filter(settings, syscall_groups())
    families = set()
    for key, value in settings:
        if key == "RestrictAddressFamilies":
            families |= set(value.split())
    deny_wx = any(k == "MemoryDenyWriteExecute" and v in ("yes", "true") for k, v in settings)
    trees = writable_trees(settings)
    proc_pids_only = ("ProcSubset", "pid") in settings

    findings, used, started, lines, tolerated = [], set(), False, 0, set()
    with open(log, encoding="utf-8", errors="replace") as trace:
        for line in trace:
            line = line.rstrip("\n")
            if not started:
                started = bool(EXEC.match(line))
                continue
            lines += 1
            match = SYSCALL.match(line) or RESUMED.match(line)
            if not match:
                continue
            call = match.group(1)
            used.add(call)
            if RESUMED.match(line):
                continue
            if call == "socket" and families:
                family = re.search(r"socket\((AF_[A-Z0-9]+)", line)
                if family and family.group(1) not in families:
                    findings.append(f"RestrictAddressFamilies= refuses {family.group(1)}: {line}")
            if deny_wx and call in ("mmap", "mprotect", "pkey_mprotect"):
                prot = re.search(r"(PROT_[A-Z|_]+)", line)
                flags = prot.group(1) if prot else ""
                if "PROT_EXEC" in flags and (call != "mmap" or "PROT_WRITE" in flags):
                    findings.append(f"MemoryDenyWriteExecute= refuses: {line}")
            path = path_of(call, line) if (call in OPEN_CALLS or call in WRITING_CALLS
                                     or call in ("stat", "newfstatat", "statx", "access",
                                                 "faccessat", "faccessat2", "readlink")) else None
            if path and under(path, HOME_TREES):
                findings.append(f"ProtectHome= hides {path}: {line}")
            if path in TOLERATED:
                tolerated.add(f"{path}: {TOLERATED[path]}")
            elif path and proc_pids_only and path.startswith("/proc/") and not PROC_PID.match(path):
                findings.append(f"ProcSubset=pid hides {path}: {line}")
            writes = call in WRITING_CALLS or (call in OPEN_CALLS
                                               and any(f in line for f in WRITE_FLAGS))
            if path and writes and not under(path, trees):
                findings.append(f"ProtectSystem=strict makes {path} read-only: {line}")
    if not started:
        findings.append("no successful execve of /usr/bin/sniwalk in the trace")
    if allowed is not None:
        for call in sorted(used - allowed):
            findings.append(f"SystemCallFilter= refuses the system call {call}")
    for call in sorted(used & denied):
        findings.append(f"SystemCallFilter= refuses the system call {call}")
    for finding in findings:
        print(f"sandbox: {finding}")
    for note in sorted(tolerated):
        print(f"sandbox: tolerated: {note}")
    if findings:
        return 1
    print(f"sandbox: {len(used)} distinct system calls in {lines} trace lines, all allowed "
          f"by {unit}: {' '.join(sorted(used))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
