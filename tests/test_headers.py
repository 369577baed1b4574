"""BTF-derived headers: pure parts without root, the real build with it."""
import os
import subprocess
import sys
import time

import pytest

from pytracekit.kernel import headers

from conftest import ROOT, pytracekit


class FakeBtf:
    by_name = {"struct task_struct": [1], "u32": [2], "pid_t": [3], "struct sock": [4]}
    enumerators = {"TCP_CLOSE": 5, "false": 6}


def test_autoconf_translates_y_m_values_and_skips_n():
    text = headers.autoconf_h("CONFIG_A=y\nCONFIG_B=m\nCONFIG_C=250\nCONFIG_D=\"x\"\n"
                              "# CONFIG_E is not set\nCONFIG_F=n\n")
    assert "#define CONFIG_A 1" in text
    assert "#define CONFIG_B_MODULE 1" in text
    assert "#define CONFIG_C 250" in text
    assert '#define CONFIG_D "x"' in text
    assert "CONFIG_E" not in text and "CONFIG_F" not in text


def test_version_code_caps_sublevel_like_the_kernel():
    assert headers.version_code("6.18.44-fc") == (6 << 16) + (18 << 8) + 44
    assert headers.version_code("5.4.300") == (5 << 16) + (4 << 8) + 255


def test_used_type_names_finds_types_and_enumerators_but_not_base_or_comments():
    src = """
    // struct sock in a comment is ignored
    struct task_struct *t; u32 x; pid_t p = "struct sock"[0]; int s = TCP_CLOSE;
    bool b = false;
    """
    names = headers.used_type_names(src, FakeBtf(), skip=headers.BASE_MACROS)
    assert names == ["struct task_struct", "pid_t", "TCP_CLOSE"]


def test_write_atomic_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "a" / "b.h"
    headers.write_atomic(target, "x")
    headers.write_atomic(target, "y")
    assert target.read_text() == "y"
    assert sorted(p.name for p in target.parent.iterdir()) == ["b.h"]


@pytest.mark.root
def test_tree_is_built_from_btf_and_cached_per_kernel(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTRACEKIT_CACHE", str(tmp_path))
    tree = headers.include_tree()
    assert tree.from_btf
    assert (tree.source / "include/linux/kconfig.h").exists()
    assert "CONFIG_BPF_SYSCALL 1" in (tree.source / "include/generated/autoconf.h").read_text()
    assert "struct pt_regs" in (tree.source / "include/uapi/linux/ptrace.h").read_text()
    assert tree.root.parent == tmp_path and tree.root.name.startswith(os.uname().release)
    src = '#include "vmlinux.h"\nint f(struct task_struct *t) { return 0; }\n'
    directory = headers.program_header(tree, src)
    text = (directory / "vmlinux.h").read_text()
    assert "struct task_struct {" in text
    # only what the program uses: far smaller than the whole dump
    assert text.count("\n") < 20000
    assert headers.program_header(tree, src) == directory


@pytest.mark.root
def test_concurrent_first_builds_never_see_half_written_files(tmp_path):
    """Two tools starting at once on a cold cache both compile."""
    code = ("from pytracekit.engine.loader import Program\n"
            "p = Program.from_text('t', '#include \"vmlinux.h\"\\n"
            "TRACEPOINT_PROBE(sched, sched_switch) { return args->prev_pid == 0; }')\n"
            "p.close(); print('ok')\n")
    env = {**os.environ, "PYTRACEKIT_CACHE": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.strip() == "ok"


@pytest.mark.root
def test_no_btf_and_no_headers_is_one_clear_line(tmp_path):
    env = {"PYTRACEKIT_CACHE": str(tmp_path), "PYTRACEKIT_VMLINUX_BTF": str(tmp_path / "none")}
    if os.path.isdir(f"/lib/modules/{os.uname().release}/build"):
        pytest.skip("this machine has kernel headers to fall back on")
    res = subprocess.run([sys.executable, "examples/count_syscalls.py", "-d", "1"], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, **env}, timeout=60)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, res.stderr
    assert "neither BTF" in lines[0] and "CONFIG_DEBUG_INFO_BTF" in lines[0]


def test_drop_definitions_removes_only_the_named_definitions():
    text = ("typedef unsigned int __u32;\n\n"
            "typedef long int __kernel_long_t;\n\n"
            "struct bpf_attr {\n\t__u32 x;\n};\n\n"
            "enum {\n\tBPF_REG_0 = 0,\n\tBPF_REG_1 = 1,\n};\n\n"
            "typedef void (*handler_t)(int);\n\n"
            "struct keep {\n\t__kernel_long_t y;\n};\n\n")
    out = headers.drop_definitions(text, {"__u32", "struct bpf_attr", "handler_t"},
                                   {"BPF_REG_0"})
    assert "struct bpf_attr {" not in out and "BPF_REG_0" not in out
    assert "typedef unsigned int __u32" not in out and "handler_t" not in out
    # dependencies of dropped types stay: other types need them
    assert "typedef long int __kernel_long_t;" in out
    assert "struct keep {" in out


def test_installed_headers_fallback_includes_the_types_programs_use():
    text = headers.INSTALLED_HEADERS_VMLINUX_H
    for header in ("linux/sched.h", "net/sock.h", "linux/blkdev.h", "uapi/linux/ptrace.h"):
        assert f"#include <{header}>" in text
