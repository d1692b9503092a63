/**
 * docker-py's own exec tests (its `tests/integration/api_exec_test.py`) and the build and tag
 * tests the gate refused before (a build on a named network, a Dockerfile from outside the
 * context, `tag?force=0`) through a wide no-escape gate against a real dockerd: no outcome differs from a direct run on the daemon's socket
 * (scripts/docker_py_suite.ts, bounded to one file; the whole suite is that script's job).
 * Skips loudly when docker-py's source or pytest is not on this machine.
 *
 * @module
 */

import { join } from "node:path";
import { DENO, ROOT } from "./helpers/gate.ts";
import { dockerdUnavailable } from "./helpers/dockerd.ts";
import { DOCKER_PY_REPO } from "../scripts/docker_py_suite.ts";

function missing(): string | undefined {
  try {
    Deno.statSync(DOCKER_PY_REPO);
  } catch {
    return `docker-py's source (${DOCKER_PY_REPO})`;
  }
  const py = new Deno.Command("/usr/bin/python3", {
    args: ["-c", "import pytest, pytest_timeout, paramiko, docker"],
    stdout: "null",
    stderr: "null",
  }).outputSync();
  return py.code === 0 ? undefined : "python3-pytest, python3-pytest-timeout or python3-paramiko";
}

const why = missing();
if (why) {
  console.error(`\n${"!".repeat(78)}\nSKIP: docker-py suite: no ${why}\n${"!".repeat(78)}\n`);
}

Deno.test({
  name:
    "docker-py's exec, build and tag tests: the same outcomes through a wide no-escape gate as direct",
  ignore: dockerdUnavailable() || why !== undefined,
  async fn() {
    const out = await new Deno.Command(DENO, {
      args: [
        "run",
        "-A",
        join(ROOT, "scripts", "docker_py_suite.ts"),
        "--timeout",
        "60",
        "tests/integration/api_exec_test.py",
        // Refused by the gate before route_params learnt dockerd's reading of them.
        "tests/integration/api_build_test.py::BuildTest::test_build_with_network_mode",
        "tests/integration/api_build_test.py::BuildTest::test_build_out_of_context_dockerfile",
        "tests/integration/models_images_test.py::ImageCollectionTest::test_save_and_load_repo_name",
      ],
      stdin: "null",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    const log = new TextDecoder().decode(out.stderr);
    if (out.code !== 0) throw new Error(`differences (exit ${out.code}):\n${text}\n${log}`);
    const passed = text.match(/^gate: +(\d+) passed/m);
    // A run that passes nothing proves nothing (an image or a daemon that did not start).
    if (!passed || Number(passed[1]) < 18) throw new Error(`too few passed:\n${text}\n${log}`);
  },
});
