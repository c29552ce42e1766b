"""Run a command with the project's local Airflow environment: ``python -m infra.local.run CMD ...``.

Sets AIRFLOW_HOME, the DAG and plugin folders, and the local default connections and variables
(see :mod:`infra.local.settings`) without overriding anything already set by the caller, then
replaces itself with the command. ``make airflow ARGS=...`` is this in front of ``airflow``.
"""

from __future__ import annotations

import os
import shutil
import sys

from infra.local.settings import airflow_environment


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m infra.local.run COMMAND [ARG ...]", file=sys.stderr)
        return 2
    env = airflow_environment()
    # Prefer the project's virtualenv tools (airflow, python) over whatever else is on PATH.
    bin_dir = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    program = shutil.which(argv[0], path=env["PATH"]) or argv[0]
    os.execvpe(program, argv, env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
