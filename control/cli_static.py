"""``pykernel lint FILE`` and ``pykernel plan FILE``: the static workflow's build-time verbs.

``lint`` exits 0 when the file is clean or has only warnings, 1 on any error; its output
is one ``file:line:column: severity[code] field: message`` line per diagnostic and a
summary (``--json``: the report with every diagnostic). ``plan`` prints a summary of the
resolved system, or with ``--json`` the canonical plan JSON (byte-identical across runs);
a file with lint errors makes it fail with the first error and the error count.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from pykernel.cli import add_json_flag, emit

if TYPE_CHECKING:
    from control.lint import LintReport
    from control.plan import Plan


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``lint`` and ``plan`` verbs to the ``pykernel`` command."""
    verbs = (
        ("lint", _lint, "check a wiring file without starting anything",
         "Report every error and warning of a wiring file, each at file:line:column with "
         "its field. Exit 1 on any error."),
        ("plan", _plan, "print the resolved, deterministic plan of a wiring file",
         "Resolve a lint-clean wiring file: pipes, connection IDs, bindings, environment "
         "and start order. --json prints the canonical plan."),
    )
    for name, func, summary, description in verbs:
        parser = subparsers.add_parser(name, help=summary, description=description)
        parser.add_argument("file", metavar="FILE", help="the YAML wiring file")
        add_json_flag(parser)
        parser.set_defaults(func=func)


def _lint(args: argparse.Namespace) -> int:
    from control.lint import lint_file  # loaded when the verb runs: `pykernel` starts fast

    report = lint_file(args.file)
    emit(args, report.to_dict(), lambda _: render_report(report))
    return 0 if report.ok else 1


def render_report(report: LintReport) -> str:
    """Render a lint report for a terminal: one line per diagnostic, then a summary."""
    lines = [d.format() for d in report.diagnostics]
    errors, warnings = len(report.errors), len(report.warnings)
    if errors or warnings:
        lines.append(f"{report.file}: {errors} error{'s' * (errors != 1)}, "
                     f"{warnings} warning{'s' * (warnings != 1)}")
    else:
        lines.append(f"{report.file}: ok")
    return "\n".join(lines)


def _plan(args: argparse.Namespace) -> int:
    from control.plan import build_plan  # loaded when the verb runs: `pykernel` starts fast

    plan = build_plan(args.file)
    if args.json:
        sys.stdout.write(plan.to_json())
    else:
        sys.stdout.write(render_plan(plan) + "\n")
    return 0


def render_plan(plan: Plan) -> str:
    """Render a plan as a short human summary."""
    out = [f"system {plan.system}  connectome {plan.connectome_id[:16]}",
           f"start order: {' -> '.join(plan.start_order)}", "", "pipes:"]
    for p in plan.pipes:
        out.append(f"  {p.name:<40} {p.shape:<11} {p.slots} x {p.slot_size} B"
                   f"{'  lossy' if p.lossy else ''}  mode {p.mode:04o}"
                   f"  readers<={p.max_readers} writers<={p.max_writers}")
    out += ["", "connections:"]
    for c in plan.connections:
        out.append(f"  {c.id}  {c.source} -> {c.target}  via {c.pipe}")
    out += ["", "servers:"]
    for s in plan.servers:
        run = s.entry if s.kind == "python" else " ".join(s.argv)
        deps = f"  after {', '.join(s.depends_on)}" if s.depends_on else ""
        out.append(f"  {s.name:<20} {s.kind:<7} {run}  restart={s.restart}{deps}")
        for name, b in s.terminals.items():
            out.append(f"    {name:<18} {b.role:<6} {b.pipe}")
    return "\n".join(out)
